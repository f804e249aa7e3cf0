"""Clinician sign-in, and who is calling.

- `principals`: the callers (`Clinician`, `Phone`, `Principal`), the cookie names, bearer-token shapes and
  the embedded clinician token's checks.
- `oidc`: production sign-in, OpenID Connect bearer JWTs verified against the issuer's JWK Set.
- `signin`: server-side sign-in sessions, the rules (start, authenticate, touch, end, sweep).
- `repository`: the sign-in sessions' SQL.

The wiring (which credential a request is tried with, in what order) is `consultcam.deps`; the sign-in
pages are `consultcam.web.pages`. The authorization code flow and SMART launch (issue 13) belong here.
"""
