-- Bulk mail (R18): the clusters of near-duplicate messages of each contract, shared by the
-- nodes (a cluster's representative fingerprint: 32 MinHash values in hex, or the key of what
-- the message carries), and their delivered copies per hour, summed from every node's deltas.
CREATE TABLE bulk_clusters (
    id TEXT PRIMARY KEY NOT NULL,
    contract TEXT NOT NULL,
    minhash TEXT NOT NULL,
    carried TEXT NOT NULL,
    subject TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX bulk_clusters_contract ON bulk_clusters (contract);
CREATE TABLE bulk_counts (
    cluster TEXT NOT NULL,
    hour BIGINT NOT NULL,
    copies BIGINT NOT NULL,
    PRIMARY KEY (cluster, hour)
);
CREATE INDEX bulk_counts_hour ON bulk_counts (hour);
