"""The sharing side of govdata (docs/SHARING.md): the resource catalogue's sharing classes
enforced by the warehouse (consumer roles, requests, approvals, grants, expiry), and the
verification / prefill service for the service hall with its hash-chained request log."""
