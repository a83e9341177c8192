"""Fault tests (issue 8, section 4): real `empfast serve` and `empfast worker` processes on a private
redis-server, killed with SIGKILL (or stopped with SIGSTOP) under load, counting what clients see.
docs/guarantees.md names the promise each test stands behind."""
