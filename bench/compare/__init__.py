"""empfast next to BullMQ in one run: `python -m bench.compare` (run.py). The peers' load processes
are sdk_load.py, protocol_load.py and bullmq_load.mjs; steps.py is their handshake with run.py."""
