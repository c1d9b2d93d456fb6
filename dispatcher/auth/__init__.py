"""Authentication: bearer JWTs from configured issuers (and an embedded one) → a :class:`Principal`.

``config`` (settings), ``principal`` (WLCG claim mapping), ``jwks`` (issuer keys), ``tokens``
(validation), ``issuer`` (the embedded issuer), ``minting`` (role-bound tokens for the demo, the
factory, its pilots and load tests), ``gridmap`` (X.509 client certificates mapped by DN),
``interceptor`` (the one gRPC interceptor that reads credentials). Token mode is the default.
Roles, VO isolation and pilot binding build on the principal (issue #14).
"""
