"""pipeteer: queue-based orchestration of data-first workflows that include people."""
