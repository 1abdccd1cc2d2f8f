-- The W3C trace context of the span that queued a job (`traceparent`, then `tracestate` after a
-- newline), so the job's run, in whatever worker and however much later, continues that trace.
-- NULL when no trace was being recorded.
ALTER TABLE jobs ADD COLUMN trace_context text;
