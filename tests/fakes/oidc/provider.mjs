// A real OpenID Connect provider (the npm package oidc-provider) for the sign-in
// tests, on a loopback port. Its configuration comes as JSON in OIDC_TEST_CONFIG:
//   {"port": 0, "clients": [{client_id, client_secret, redirect_uris}],
//    "accounts": {"alice": {"email": "...", "name": "...", "groups": ["..."]}}}
// It prints "LISTENING <port>" when it takes requests. Its login page is the
// package's development interaction (any password for a listed account): what
// the tests check is the relying party, WebAdmin, not the provider's own login.
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OIDC_TEST_CONFIG);
const accounts = config.accounts;

async function findAccount(ctx, id) {
  const account = accounts[id];
  if (!account) return undefined;
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        preferred_username: id,
        email: account.email,
        email_verified: true,
        name: account.name,
        groups: account.groups,
      };
    },
  };
}

const issuer = `http://127.0.0.1:${config.port}`;
const provider = new Provider(issuer, {
  clients: config.clients,
  findAccount,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  cookies: { keys: ['test-only-cookie-key'] },
  features: { devInteractions: { enabled: true } },
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
