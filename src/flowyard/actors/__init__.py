"""The actor runtime: mailboxes, timers, queues, push delivery, the jobs engine, the supervisor."""
