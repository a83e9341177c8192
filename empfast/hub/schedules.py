"""Repeating jobs on the hub (docs/job-control.md section 2): a monitor's schedule messages, and
firing the due runs of each queue after every sweep. A run is added once whatever the number of
hubs: its job id is the schedule's name and due time (so a second add finds it), and only the hub
whose advanceSchedule finds the schedule still at that due time moves it on. A hub that was down
fires only the latest missed run, once: the next due time is computed after now, not after the
missed one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from empfast import errors as e
from empfast import messages as m
from empfast.errors import ProtocolError
from empfast.hub import frames
from empfast.hub.clients import check_value
from empfast.hub.conn import Peer
from empfast.limits import SCHEDULES_PER_SWEEP
from empfast.schedules import Schedule, ScheduleError
from empfast.store import NewJob

if TYPE_CHECKING:
    from empfast.hub.room import QueueRoom
    from empfast.hub.server import Hub

log = logging.getLogger("empfast.hub")


class ScheduleHandlers:
    """Handlers are named `on_<message type>` (messages.handler_table finds them)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def on_set_schedule(self, peer: Peer, message: m.SetSchedule) -> None:
        payload = bytes(message.payload)
        check_value(payload, "payload", self.hub.config.max_frame_bytes)
        try:
            schedule = Schedule(message.name, message.job_type, payload.decode(), message.priority,
                                message.max_attempts, message.cron, message.every_s, message.tz,
                                message.paused)
        except ScheduleError as exc:
            raise ProtocolError(e.BAD_MESSAGE, str(exc), field=exc.field) from None
        store = peer.room.store
        due = None if schedule.paused else schedule.next_due_ms(await store.clock_ms())
        created = await store.set_schedule(schedule, due)
        log.info("schedule %r of queue %r %s", schedule.name, peer.room.name,
                 "created" if created else "replaced")
        peer.reply(message.req, frames.schedule(schedule.describe(due), created=created))

    async def on_list_schedules(self, peer: Peer, message: m.ListSchedules) -> None:
        found = await peer.room.store.get_schedules()
        peer.reply(message.req, frames.schedules([schedule.describe(due) for schedule, due in found]))

    async def on_pause_schedule(self, peer: Peer, message: m.PauseSchedule) -> None:
        await self._set_paused(peer, message, True)

    async def on_resume_schedule(self, peer: Peer, message: m.ResumeSchedule) -> None:
        await self._set_paused(peer, message, False)

    async def _set_paused(self, peer: Peer, message: m.NamedSchedule, paused: bool) -> None:
        store = peer.room.store
        found = await store.get_schedule(message.name)
        if found is None:
            raise ProtocolError(e.NOT_FOUND, f"no schedule {message.name!r} in this queue: list_schedules "
                                "names them", field="name")
        schedule = found[0].with_paused(paused)
        due = None if paused else schedule.next_due_ms(await store.clock_ms())
        await store.set_schedule(schedule, due)
        peer.reply(message.req, frames.schedule(schedule.describe(due)))

    async def on_remove_schedule(self, peer: Peer, message: m.RemoveSchedule) -> None:
        removed = await peer.room.store.remove_schedule(message.name)
        peer.reply(message.req, {"type": "schedule_removed", "name": message.name, "removed": removed})

    async def fire_due(self, room: QueueRoom) -> int:
        """Add the due runs of a queue's schedules (called after each sweep); the runs this hub
        moved on."""
        store = room.store
        now_ms = await store.clock_ms()
        fired = 0
        for schedule, due_ms in await store.due_schedules(now_ms, SCHEDULES_PER_SWEEP):
            await store.add_jobs([NewJob(schedule.job_type, schedule.payload.encode(), schedule.priority,
                                         schedule.job_id(due_ms), schedule.max_attempts)])
            if await store.advance_schedule(schedule.name, due_ms, schedule.next_due_ms(now_ms)):
                fired += 1
        return fired
