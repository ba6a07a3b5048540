"""HTTP routes, one router per concern; `reward_service.app` assembles them.

- `scoring`: /score, /get_reward (OpenRLHF), /v1/jobs/{id}
- `raters`: the labeling page and the raters' task API
- `admin`: hot reload, the human queue's export and summary
- `operations`: /healthz, /readyz, /v1/backends, /metrics
- `dependencies`: what a route may ask for (the scorer, the registry, keys, rater tokens)
- `errors`: the one table from domain errors to statuses, and the typed error body
- `limits`: the body-size middleware and cancelling work when the client goes away
- `security_headers`: CSP, framing and sniffing headers on every response
- `docs`: the API docs (Swagger UI) from the package, and the favicon request

Routes are thin: parse, call the scorer or the queue, shape the reply.
"""
