"""Jobs: one job per exam and model; its table is also the audit record of the exam."""
