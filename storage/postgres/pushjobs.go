package postgres

import (
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// queuePushJobs adds to a writer's transaction the push jobs of the batch's
// new messages: one per message of type msg, keyed by its id, pointing at
// the recipient's copy (the first inbox). A message to oneself has none.
func queuePushJobs(b *pgx.Batch, fresh []*storage.Message, results map[*storage.Message][]protocol.Entry) {
	var ids, inboxes, senders, tos []string
	var seqs, tss []int64
	var data [][]byte
	for _, r := range fresh {
		es, ok := results[r]
		if !ok || !storage.WantsPush(r) {
			continue
		}
		ids, inboxes, seqs = append(ids, r.ID), append(inboxes, es[0].Inbox), append(seqs, es[0].Seq)
		senders, tos, tss, data = append(senders, r.From), append(tos, r.To), append(tss, r.TS), append(data, nonNil(r.Data))
	}
	if len(ids) == 0 {
		return
	}
	b.Queue(`INSERT INTO push_jobs (id, inbox, seq, sender, recipient, ts, data)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::bytea[])
		ON CONFLICT DO NOTHING`, ids, inboxes, seqs, senders, tos, tss, data)
}
