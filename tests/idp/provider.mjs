// The OpenID Provider the consultcam tests sign in with: `oidc-provider` (panva, OpenID Certified), with its
// development login form (any login and password: the login becomes the account's `sub`) and consent
// granted for the one first-party client. Started by tests/auth/idp.py; configured from the environment:
//
//   IDP_PORT                the port on 127.0.0.1 (the issuer is http://127.0.0.1:<port>)
//   IDP_CLIENT_ID / _SECRET the confidential client consultcam is
//   IDP_REDIRECT_URI        its redirect URI ({PUBLIC_URL}/auth/callback)
//   IDP_POST_LOGOUT_URI     its post-logout redirect URI ({PUBLIC_URL}/)
//   IDP_AUTH_METHOD         the client's token_endpoint_auth_method (client_secret_basic by default); the
//                           provider then offers only that one in its metadata
//   IDP_END_SESSION         "0": no RP-Initiated Logout (no end_session_endpoint in the metadata)
//
// Every start signs with a new RSA key of a new `kid` (a restart is a key rotation). Prints
// "ready <issuer>" on stdout once it listens.
import { generateKeyPairSync, randomUUID } from "node:crypto";

import Provider from "oidc-provider";

const port = Number(process.env.IDP_PORT);
const issuer = `http://127.0.0.1:${port}`;
const authMethod = process.env.IDP_AUTH_METHOD || "client_secret_basic";

// The test accounts: any login signs in; these have a display name and a FHIR Practitioner.
const PEOPLE = {
  "dr-aroha": { name: "Dr Aroha Ngata", fhirUser: "Practitioner/prac-42" },
  "dr-ben": { name: "Dr Ben Carter" },
};

const signingKey = {
  ...generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" }),
  kid: randomUUID(),
  alg: "RS256",
  use: "sig",
};

const configuration = {
  jwks: { keys: [signingKey] },
  clients: [
    {
      client_id: process.env.IDP_CLIENT_ID,
      client_secret: process.env.IDP_CLIENT_SECRET,
      redirect_uris: [process.env.IDP_REDIRECT_URI],
      post_logout_redirect_uris: [process.env.IDP_POST_LOGOUT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: authMethod,
    },
  ],
  clientAuthMethods: [authMethod],
  pkce: { required: () => true },
  scopes: ["openid", "profile", "fhirUser"],
  claims: { openid: ["sub"], profile: ["name"], fhirUser: ["fhirUser"] },
  async findAccount(ctx, id) {
    const person = PEOPLE[id] || {};
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...person };
      },
    };
  },
  // First-party client: consent is granted without asking (the login form is the only page).
  async loadExistingGrant(ctx) {
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid profile fhirUser");
    await grant.save();
    return grant;
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: process.env.IDP_END_SESSION !== "0" },
  },
  cookies: { keys: ["consultcam-test-idp-cookie-key"] },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Session: 3600, Interaction: 600, Grant: 3600 },
};

const provider = new Provider(issuer, configuration);
provider.on("server_error", (ctx, err) => console.error("server_error", err));
provider.listen(port, "127.0.0.1", () => console.log(`ready ${issuer}`));
