// Standard Webhooks signatures (webhook-id, webhook-timestamp, webhook-signature) with the `standardwebhooks`
// library, one `v1,<sig>` per secret during a rotation. Never logs, returns or stores a secret.
import { Webhook } from 'standardwebhooks';

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

export type Sign = (messageId: string, timestampSeconds: number, payload: string) => SignedHeaders;

/**
 * A signer for one tenant's secrets (`whsec_…`, newest first). Every secret signs each message and the signatures are
 * space-separated, as the spec allows: a receiver that knows either the old or the new secret verifies it.
 */
export function createSigner(secrets: readonly string[]): Sign {
  if (secrets.length === 0) throw new Error('a webhook signer needs at least one secret');
  const signers = secrets.map((secret) => new Webhook(secret));
  return (messageId, timestampSeconds, payload) => {
    const at = new Date(timestampSeconds * 1000);
    return {
      'webhook-id': messageId,
      'webhook-timestamp': String(timestampSeconds),
      'webhook-signature': signers.map((signer) => signer.sign(messageId, at, payload)).join(' '),
    };
  };
}
