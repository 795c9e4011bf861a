"""Jobs: the records, the create-body rules, backoff and cron. Pure: no I/O, no clock."""
