"""Start-up, desired-state rendering and (later) the plan/apply/reconcile pipeline."""
