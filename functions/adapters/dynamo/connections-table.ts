/**
 * The shape of the agents' connections table (AWS only), shared by its adapter
 * (agent-connection-store.ts) and the CDK app that creates it, so the two cannot drift apart.
 */
export const CONNECTIONS_TABLE = {
  partitionKey: 'host_id',
  sortKey: 'connection_id',
  /** Partition key: connection_id; keys only (the host id is the table's key, so it is projected). */
  connectionIndex: 'by_connection',
  timeToLiveAttribute: 'expiration',
} as const;
