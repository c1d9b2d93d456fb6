"""Authentication: bearer JWTs from configured issuers (and an embedded one) → a :class:`Principal`.

``config`` (settings), ``principal`` (WLCG claim mapping), ``jwks`` (issuer keys), ``tokens``
(validation), ``issuer`` (the embedded issuer), ``gridmap`` (X.509 client certificates mapped by
DN), ``interceptor`` (the one gRPC interceptor that reads credentials). Roles, VO isolation and
pilot binding build on the principal (issue #14).
"""
