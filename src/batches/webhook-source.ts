// The batch store as the webhook delivery worker reads it (src/webhooks/batch-events.ts): a batch's final status, its
// webhook URL and state, and the delivery log. Adapts; stores nothing of its own.
import type { BatchWebhookSource } from '../webhooks/batch-events.ts';
import type { BatchStore } from './batch-store.ts';

/** Delivery attempts kept per batch (the oldest go first). */
const MAX_DELIVERY_LOG = 100;

export function batchWebhookSource(store: BatchStore): BatchWebhookSource {
  return {
    async get(tenant, batchId) {
      const batch = await store.get(tenant, batchId);
      if (batch === undefined) return undefined;
      const finishedAt = batch.completedAt ?? batch.failedAt ?? batch.expiredAt ?? batch.cancelledAt;
      return { status: batch.status, finishedAt, url: batch.webhook?.url, webhookState: batch.webhookState };
    },
    async recordDelivery(tenant, batchId, entry, state, attempt) {
      await store.recordDelivery(tenant, batchId, JSON.stringify(entry), state, attempt, MAX_DELIVERY_LOG);
    },
  };
}
