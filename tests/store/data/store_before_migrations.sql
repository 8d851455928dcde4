-- A store made by the code from before migrations (main at 6cba363): its schema and a
-- few rows (one tenant, three jobs of one ordering key, the first finished).
BEGIN TRANSACTION;
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    revoked_at REAL
);
INSERT INTO "api_keys" VALUES('k_a96b98aa5a424420','t_5f8694aca92645b6','46eaeaa5ec742c28905d90232471687f992771191dc78f24648258b32f98e33e','sk_JS1loq1',0,1.79642927630990767483e+09,NULL);
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    tenant_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    job_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO "audit_events" VALUES(1,1.79642927630997943882e+09,'t_5f8694aca92645b6','cli','key_created','','{"admin": false, "key_id": "k_a96b98aa5a424420"}');
INSERT INTO "audit_events" VALUES(2,1.79642927631492161756e+09,'t_5f8694aca92645b6','key:test','submitted','01a24387649a5342a3675429aebd','{"attempt": 0}');
INSERT INTO "audit_events" VALUES(3,1.79642927631725430486e+09,'t_5f8694aca92645b6','key:test','submitted','01a24387649dd46fd9ff1592e373','{"attempt": 0}');
INSERT INTO "audit_events" VALUES(4,1.79642927631782221798e+09,'t_5f8694aca92645b6','key:test','submitted','01a24387649db4a85204de0b72b1','{"attempt": 0}');
INSERT INTO "audit_events" VALUES(5,1.79642927631835103031e+09,'t_5f8694aca92645b6','worker:w1','started','01a24387649a5342a3675429aebd','{"attempt": 1}');
INSERT INTO "audit_events" VALUES(6,1.79642927631952643396e+09,'t_5f8694aca92645b6','worker:w1','output_finished','01a24387649a5342a3675429aebd','{"stderr_bytes": 0, "stdout_bytes": 0}');
INSERT INTO "audit_events" VALUES(7,1.79642927631952643396e+09,'t_5f8694aca92645b6','worker:w1','succeeded','01a24387649a5342a3675429aebd','{"attempt": 1}');
CREATE TABLE cpu_usage (
    tenant_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    cpu_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, minute)
) WITHOUT ROWID;
CREATE TABLE job_events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
INSERT INTO "job_events" VALUES('01a24387649a5342a3675429aebd',1,X'0A1C3031613234333837363439613533343261333637353432396165626410011A0C08DCABCDD8061080A695960122020801');
INSERT INTO "job_events" VALUES('01a24387649a5342a3675429aebd',2,X'0A1C3031613234333837363439613533343261333637353432396165626410021A0C08DCABCDD8061080CEE69701220408021001');
INSERT INTO "job_events" VALUES('01a24387649a5342a3675429aebd',3,X'0A1C3031613234333837363439613533343261333637353432396165626410031A0C08DCABCDD8061080ACAE980132020801');
INSERT INTO "job_events" VALUES('01a24387649a5342a3675429aebd',4,X'0A1C3031613234333837363439613533343261333637353432396165626410041A0C08DCABCDD8061080ACAE9801220408031001');
INSERT INTO "job_events" VALUES('01a24387649db4a85204de0b72b1',1,X'0A1C3031613234333837363439646234613835323034646530623732623110011A0C08DCABCDD8061080AAC6970122020801');
INSERT INTO "job_events" VALUES('01a24387649dd46fd9ff1592e373',1,X'0A1C3031613234333837363439646434366664396666313539326533373310011A0C08DCABCDD8061080D6A3970122020801');
CREATE TABLE job_holds (
    job_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    held_at REAL NOT NULL,
    -- when a message for it was published again; NULL while it still waits
    released_at REAL
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    language TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    replays INTEGER NOT NULL DEFAULT 0,
    spec BLOB NOT NULL,
    idempotency_key TEXT NOT NULL DEFAULT '',
    ordering_key TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    lease_owner TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    state_reason TEXT NOT NULL DEFAULT '',
    last_seq INTEGER NOT NULL DEFAULT 0,
    -- seq of the event that started the current attempt: its output follows it
    attempt_seq INTEGER NOT NULL DEFAULT 0,
    -- dead-lettered and over its replay budget: waits in the parking lot for an operator
    parked INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "jobs" VALUES('01a24387649a5342a3675429aebd','t_5f8694aca92645b6',3,'python',1,0,X'0A06707974686F6E12130A076D61696E2E707912087072696E742830293A016B42060A016E120130','','k','{"n": "0"}',1.79642927631492161756e+09,1.79642927631835103031e+09,1.79642927631952643396e+09,NULL,NULL,0,X'0801','',4,2,0);
INSERT INTO "jobs" VALUES('01a24387649dd46fd9ff1592e373','t_5f8694aca92645b6',1,'python',0,0,X'0A06707974686F6E12130A076D61696E2E707912087072696E742831293A016B42060A016E120131','','k','{"n": "1"}',1.79642927631725430486e+09,NULL,NULL,NULL,NULL,0,NULL,'',1,0,0);
INSERT INTO "jobs" VALUES('01a24387649db4a85204de0b72b1','t_5f8694aca92645b6',1,'python',0,0,X'0A06707974686F6E12130A076D61696E2E707912087072696E742832293A016B42060A016E120132','','k','{"n": "2"}',1.79642927631782221798e+09,NULL,NULL,NULL,NULL,0,NULL,'',1,0,0);
CREATE TABLE languages (
    id TEXT PRIMARY KEY,
    language BLOB NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE submit_buckets (
    tenant_id TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE tenant_job_counts (
    tenant_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, state)
) WITHOUT ROWID;
INSERT INTO "tenant_job_counts" VALUES('t_5f8694aca92645b6',1,2);
INSERT INTO "tenant_job_counts" VALUES('t_5f8694aca92645b6',2,0);
INSERT INTO "tenant_job_counts" VALUES('t_5f8694aca92645b6',3,1);
CREATE TABLE tenant_quotas (
    tenant_id TEXT PRIMARY KEY,
    -- only the fields set for this tenant; the rest come from Settings
    overrides TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
INSERT INTO "tenants" VALUES('t_5f8694aca92645b6','before-migrations',1.79642927630947327613e+09);
CREATE UNIQUE INDEX jobs_idempotency
    ON jobs(tenant_id, idempotency_key) WHERE idempotency_key != '';
CREATE INDEX jobs_tenant_id ON jobs(tenant_id, id);
CREATE INDEX jobs_running_lease ON jobs(state, lease_expires_at);
CREATE INDEX audit_by_tenant ON audit_events(tenant_id, seq);
CREATE INDEX audit_by_job ON audit_events(job_id, seq) WHERE job_id != '';
CREATE INDEX jobs_tenant_state ON jobs(tenant_id, state);
CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO tenant_job_counts (tenant_id, state, jobs) VALUES (new.tenant_id, new.state, 1)
        ON CONFLICT (tenant_id, state) DO UPDATE SET jobs = jobs + 1;
END;
CREATE TRIGGER jobs_counted_on_state AFTER UPDATE OF state ON jobs
    WHEN old.state != new.state BEGIN
    UPDATE tenant_job_counts SET jobs = jobs - 1
        WHERE tenant_id = old.tenant_id AND state = old.state;
    INSERT INTO tenant_job_counts (tenant_id, state, jobs) VALUES (new.tenant_id, new.state, 1)
        ON CONFLICT (tenant_id, state) DO UPDATE SET jobs = jobs + 1;
END;
CREATE TRIGGER jobs_counted_on_delete AFTER DELETE ON jobs BEGIN
    UPDATE tenant_job_counts SET jobs = jobs - 1
        WHERE tenant_id = old.tenant_id AND state = old.state;
END;
CREATE INDEX jobs_ordering ON jobs(tenant_id, ordering_key, state)
    WHERE ordering_key != '';
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('audit_events',7);
COMMIT;
