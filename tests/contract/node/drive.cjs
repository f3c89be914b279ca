// Drives Salesforce's official Agent API client, @salesforce/agents (the library behind
// `sf agent preview`), against the Agentforce simulator: start a session, send a message,
// end it. Prints one JSON object on stdout: what the client returned, or the error it raised.
//
// Usage: node drive.cjs '<json: {apiUrl, tokenUrl, clientId, clientSecret, instanceUrl, agentId,
//                                agentType, text}>'
//
// The smallest honest seam. ProductionAgent talks to the Agent API through the "JWT
// connection" of a ConnectionManager, which the CLI builds from a stored org login (a
// username and a refresh token on disk) and upgrades through an org endpoint: neither exists
// without a real org. So the token comes from the simulator's client-credentials endpoint, as
// the daemon gets it, and goes into a @salesforce/core Connection (the class the CLI uses,
// headers included), which the library's own test hook, setManagerForTesting, hands to the
// agent. ProductionAgent builds every request itself from `apiBase` (a public field, set to
// the simulator instead of https://api.salesforce.com/einstein/ai-agent/v1).
//
// 2.x also reads the agent's BotDefinition before it starts a session (a SOQL query on the
// org's "standard connection", the REST data API, not the Agent API): its AgentType decides
// bypassUser (false for AgentforceEmployeeAgent). The daemon makes no such query (it has
// [agentforce] bypass_user instead), so that one call is answered here, with the agentType the
// test asks for, and the query is printed with the result; everything else goes to the
// simulator.
'use strict';

const { Connection } = require('@salesforce/core');
const { ProductionAgent } = require('@salesforce/agents');
const { setManagerForTesting } = require('@salesforce/agents/lib/connectionManager');

async function main() {
  const config = JSON.parse(process.argv[2]);
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: config.clientId,
    client_secret: config.clientSecret,
  });
  const tokenResponse = await fetch(config.tokenUrl, { method: 'POST', body: form });
  const token = await tokenResponse.json();
  const connection = new Connection({
    authInfo: { getUsername: () => 'contract-test@example.com' },
    connectionOptions: { accessToken: token.access_token, instanceUrl: config.instanceUrl, version: '63.0' },
  });
  await connection.init();
  const queries = [];
  const org = {
    instanceUrl: config.instanceUrl,
    singleRecordQuery: async (soql) => {
      queries.push(soql);
      return {
        Id: config.agentId,
        DeveloperName: 'Contract_Agent',
        MasterLabel: 'Contract Agent',
        AgentType: config.agentType,
        BotVersions: { records: [{ Id: '0X9SIM0000000001AA', VersionNumber: 1, Status: 'Active' }] },
      };
    },
  };
  setManagerForTesting(connection, { getJwtConnection: () => connection, getStandardConnection: () => org });
  const agent = new ProductionAgent({ connection, apiNameOrId: config.agentId });
  agent.apiBase = config.apiUrl;
  const out = { queries };
  try {
    out.started = await agent.preview.start();
    out.sent = await agent.preview.send(config.text);
    out.ended = await agent.preview.end('UserRequest');
  } catch (err) {
    out.error = { name: err.name, message: err.message };
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(`${(err && err.stack) || err}\n`);
  process.exit(1);
});
