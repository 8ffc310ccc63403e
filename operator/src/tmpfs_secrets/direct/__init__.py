"""Direct delivery, the operator's side: the endpoint agents stream from, and who holds what.

`hub` keeps the one central copy of each Direct ExternalSecret's key set and fans every change out
to the connected agents (no AWS call and no Kubernetes write per pod); `auth` verifies an agent's
token with TokenReview and finds its pod; `server` is the HTTPS endpoint; `status` writes how many
connected pods hold the current content.
"""
