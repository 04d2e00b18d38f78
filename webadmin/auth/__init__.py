"""Sign-in beyond the local password: OpenID Connect (``oidc``), LDAP / Active
Directory (``ldap``), the TOTP second factor of local accounts (``totp``,
``views``), the group mapping the directories share (``groups``) and the
settings read from the environment (``config``)."""
