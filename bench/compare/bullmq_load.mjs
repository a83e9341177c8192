// The BullMQ side of bench/compare: the same three workloads as the empfast load processes, run
// with BullMQ's documented API (Queue.addBulk, Queue.add, Worker, QueueEvents). Our own
// code; BullMQ itself is installed by bench/compare into a scratch folder outside the repository and
// loaded from there (--modules), never copied here.
//
// It speaks the comparison's handshake (bench/compare/steps.py): before each workload it prints
// {"event":"ready","workload":...} on stdout and waits for a "go" line on stdin, so that the
// orchestrator resets Redis's statistics right before the workload starts; after it, it prints
// {"event":"done","workload":...,"result":{...}}, then tears the workload down. Nothing else goes to
// stdout.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' },
    'redis-port': { type: 'string' },
    'job-type': { type: 'string' },
    payload: { type: 'string' },
    jobs: { type: 'string' },
    concurrency: { type: 'string' },
    batch: { type: 'string' },
    'latency-rounds': { type: 'string' },
    warmup: { type: 'string' },
  },
});
const jobs = Number(args.jobs);
const concurrency = Number(args.concurrency);
const batchSize = Number(args.batch);
const latencyRounds = Number(args['latency-rounds']);
const warmup = Number(args.warmup);
const jobType = args['job-type'];
const payload = JSON.parse(args.payload);
const RESULT = { ok: true };

// bullmq and ioredis resolve from the scratch folder the orchestrator installed them into
const requireFromScratch = createRequire(join(args.modules, 'package.json'));
const { Queue, Worker, QueueEvents } = requireFromScratch('bullmq');
const { version: bullmqVersion } = requireFromScratch('bullmq/package.json');

const QUEUE = 'compare';
const connection = { host: '127.0.0.1', port: Number(args['redis-port']) };
// As BullMQ's docs advise: keep only what is needed of finished jobs ("Auto-removal of jobs",
// "Going to production"); removing completed jobs at once is the cheapest form of it.
const defaultJobOptions = { removeOnComplete: true, removeOnFail: 1000 };

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function emit(message) {
  process.stdout.write(JSON.stringify(message) + '\n');
}

async function ready(workload) {
  emit({ event: 'ready', workload });
  const { value, done } = await stdinLines.next();
  if (done || value.trim() !== 'go') throw new Error(`expected "go" for ${workload}, got ${value}`);
}

// A worker whose processor counts the jobs it ran and whose 'completed' events (emitted once
// moveToFinished has returned, so the completion is stored) resolve `finished` at `expected`.
function countingWorker(expected, autorun) {
  const counts = { ran: 0, completed: 0 };
  let resolveFinished;
  const finished = new Promise((resolve) => { resolveFinished = resolve; });
  const worker = new Worker(QUEUE, async () => {
    counts.ran += 1;
    return RESULT;
  }, { connection, concurrency, autorun });
  worker.on('completed', () => {
    counts.completed += 1;
    if (counts.completed === expected) resolveFinished();
  });
  worker.on('failed', (job, err) => { throw new Error(`job ${job?.id} failed: ${err}`); });
  worker.on('error', (err) => { throw err; });
  return { worker, counts, finished };
}

async function addInBatches(queue, total) {
  for (let start = 0; start < total; start += batchSize) {
    const size = Math.min(batchSize, total - start);
    await queue.addBulk(Array.from({ length: size }, () => ({ name: jobType, data: payload })));
  }
}

async function drain(queue) {
  const { worker, counts, finished } = countingWorker(jobs, false);
  await worker.waitUntilReady();
  await ready('drain');
  const began = performance.now();
  await addInBatches(queue, jobs);
  const enqueued = performance.now();
  worker.run();
  await finished;
  const ended = performance.now();
  emit({ event: 'done', workload: 'drain',
         result: { jobs, ran: counts.ran, completed: counts.completed,
                   enqueue_s: (enqueued - began) / 1000, run_s: (ended - enqueued) / 1000 } });
  await worker.close();
}

async function mixed(queue) {
  const { worker, counts, finished } = countingWorker(jobs, true);
  await worker.waitUntilReady();
  await ready('mixed');
  const began = performance.now();
  await addInBatches(queue, jobs);
  await finished;
  const ended = performance.now();
  emit({ event: 'done', workload: 'mixed',
         result: { jobs, ran: counts.ran, completed: counts.completed, elapsed_s: (ended - began) / 1000 } });
  await worker.close();
}

async function latency(queue) {
  const { worker, counts } = countingWorker(-1, true);
  // The client's view of a job's end: its 'completed' event from QueueEvents, which reads the
  // queue's event stream (XREAD BLOCK). Not job.waitUntilFinished: besides the event it runs an
  // isFinished script per job, and it fails with "Missing key" once removeOnComplete removed the job.
  const queueEvents = new QueueEvents(QUEUE, { connection });
  const waiting = new Map(); // job id -> resolve, for jobs whose add has returned
  const early = new Map(); // job id -> result, for events that came before their add returned
  queueEvents.on('completed', ({ jobId, returnvalue }) => {
    const resolve = waiting.get(jobId);
    if (resolve) {
      waiting.delete(jobId);
      resolve(returnvalue);
    } else {
      early.set(jobId, returnvalue);
    }
  });
  queueEvents.on('failed', ({ jobId, failedReason }) => { throw new Error(`job ${jobId} failed: ${failedReason}`); });
  await Promise.all([worker.waitUntilReady(), queueEvents.waitUntilReady()]);
  const oneJob = async () => {
    const began = performance.now();
    const job = await queue.add(jobType, payload);
    let result;
    if (early.has(job.id)) {
      result = early.get(job.id);
      early.delete(job.id);
    } else {
      result = await new Promise((resolve) => waiting.set(job.id, resolve));
    }
    if (result?.ok !== true) throw new Error(`job ${job.id} returned ${JSON.stringify(result)}`);
    return performance.now() - began;
  };
  await ready('latency');
  for (let i = 0; i < warmup; i += 1) await oneJob();
  const latenciesMs = [];
  for (let i = 0; i < latencyRounds; i += 1) latenciesMs.push(await oneJob());
  emit({ event: 'done', workload: 'latency',
         result: { rounds: latencyRounds, warmup, ran: counts.ran, completed: counts.completed,
                   latencies_ms: latenciesMs } });
  await Promise.all([worker.close(), queueEvents.close()]);
}

const queue = new Queue(QUEUE, { connection, defaultJobOptions });
await queue.waitUntilReady();
emit({ event: 'hello', peer: 'bullmq', version: bullmqVersion });
// after each workload's 'done' line, so that closing its worker is not in the measured window
await drain(queue);
await mixed(queue);
await latency(queue);
await queue.close();
process.exit(0);
