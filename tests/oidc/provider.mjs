// A minimal but real OpenID Connect provider for the test suite (the `oidc-provider` package).
//
//   OIDC_TEST_CONFIG='{"port": 5555, "issuer": "http://127.0.0.1:5555",
//                      "clients": [{"client_id": "portal", "client_secret": "portal-secret",
//                                   "redirect_uris": ["http://127.0.0.1:5000/login/oidc/alpha/callback"],
//                                   "post_logout_redirect_uris": ["http://127.0.0.1:5000/login"]}]}' \
//     node tests/oidc/provider.mjs
//
// Config keys: port, issuer (required); clients (any client metadata is passed through; defaults:
// token_endpoint_auth_method client_secret_basic, grant_types [authorization_code], response_types
// [code]); cookie_prefix (optional, prepended to the default cookie names `_session`,
// `_interaction`, `_interaction_resume`; empty by default); exit_with_stdin (optional: exit when
// stdin closes, so the process dies with the test runner that spawned it).
//
// Behaviour: authorization code flow only, PKCE (S256) required for every client, any login name
// (and any password) signs in through the built-in development login form and becomes `sub`;
// ID tokens carry email (`<login>@example.com` unless the login contains "@"), email_verified
// (true) and name; no consent page (`loadExistingGrant` grants `openid email profile`);
// RP-initiated logout (end_session_endpoint); no outside resources (CSP). A fresh RSA signing key per process, so two
// providers never accept each other's tokens. Prints `READY <issuer>` once listening; errors go
// to stderr; SIGTERM/SIGINT exit.

import { generateKeyPair, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { promisify } from 'node:util';

// Generate the signing key on the thread pool while oidc-provider loads (both take a while).
const keyPair = promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
const { default: Provider } = await import('oidc-provider');

function fail(message) {
  process.stderr.write(`oidc test provider: ${message}\n`);
  process.exit(2);
}

let config;
try {
  config = JSON.parse(process.env.OIDC_TEST_CONFIG || '');
} catch (err) {
  fail(`OIDC_TEST_CONFIG must be a JSON object (${err.message})`);
}
if (!config || typeof config !== 'object') fail('OIDC_TEST_CONFIG must be a JSON object');
const port = Number(config.port);
if (!Number.isInteger(port) || port <= 0) fail('config.port must be a port number');
const issuer = config.issuer || `http://127.0.0.1:${port}`;
const prefix = config.cookie_prefix || '';
const SCOPE = 'openid email profile';

const clients = (config.clients || []).map((client) => ({
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  post_logout_redirect_uris: [],
  ...client,
}));

function claimsFor(login) {
  const email = login.includes('@') ? login : `${login}@example.com`;
  const local = email.split('@')[0];
  const name = local.split(/[._\-+\s]+/).filter(Boolean)
    .map((part) => part[0].toUpperCase() + part.slice(1)).join(' ') || login;
  return {
    sub: login, email, email_verified: true, name,
  };
}

const { privateKey } = await keyPair;
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: {
    keys: [randomBytes(32).toString('hex')],
    names: {
      session: `${prefix}_session`,
      interaction: `${prefix}_interaction`,
      resume: `${prefix}_interaction_resume`,
    },
  },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: SCOPE.split(' '),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return claimsFor(id);
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const grant = await ctx.oidc.provider.Grant.find(grantId);
      if (grant) return grant;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPE);
    await grant.save();
    return grant;
  },
});

// The built-in pages @import Google Fonts; tests run offline, so forbid every outside load (a
// browser would otherwise wait on it). No form-action: the login form's redirects leave the origin.
provider.use(async (ctx, next) => {
  ctx.set('Content-Security-Policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:");
  await next();
});

for (const event of [
  'server_error', 'authorization.error', 'grant.error', 'end_session.error', 'userinfo.error',
  'discovery.error', 'jwks.error', 'revocation.error', 'introspection.error', 'backchannel.error',
  'interaction.error',
]) {
  provider.on(event, (ctx, err) => {
    const error = err ?? ctx;
    const detail = error?.error_description ? ` (${error.error_description})` : '';
    process.stderr.write(`${event}: ${error?.name ?? 'Error'}: ${error?.message ?? error}${detail}\n`);
  });
}
process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandledRejection: ${err?.stack ?? err}\n`);
});

const server = provider.listen(port, '127.0.0.1');
server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}`));
await once(server, 'listening');
process.stdout.write(`READY ${issuer}\n`);

function shutdown() {
  server.closeAllConnections?.();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (config.exit_with_stdin) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
