"""Data-quality gates built from the standards (GX Core 1.x).

- `expectations.suites`: `build_suite(kind, standards, source=None)`, `build_quarantine_suite(source)`
- `expectations.run`: `validate_standardised(frames, sources, standards, quarantine_counts, run_id, docs_dir)`
  (sources in forked workers, one Data Docs site)
- `expectations.regex_metric`: GX's regex metric per distinct value or in RE2, same results
- `expectations.warehouse`: `validate_warehouse(url, run_id)`
- `expectations.outcome`: `ValidationOutcome`, the dq_result row layout
Nothing is imported here: GX is heavy, and DAG files import this package at parse time.
"""
