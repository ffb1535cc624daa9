-- A database that grew by hand before DataFlow: serial keys, now() defaults, an enum, a DBA's index,
-- a trigger with its function, a view, and a partitioned table DataFlow leaves alone.
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled');

CREATE TABLE customer (
    id serial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    full_name varchar(120) NOT NULL,
    tags text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_lower_email_idx ON customer (lower(email));

CREATE TABLE purchase (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customer (id) ON DELETE CASCADE,
    status order_status NOT NULL DEFAULT 'pending',
    total numeric(10,2) NOT NULL CHECK (total >= 0),
    placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX purchase_open_idx ON purchase (customer_id) WHERE status IN ('pending', 'paid');

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER customer_touch BEFORE UPDATE ON customer FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE VIEW open_purchase AS
    SELECT p.id, c.email, p.total FROM purchase p JOIN customer c ON c.id = p.customer_id
    WHERE p.status IN ('pending', 'paid');

CREATE TABLE page_view (
    seen_at timestamptz NOT NULL,
    path text NOT NULL
) PARTITION BY RANGE (seen_at);
CREATE TABLE page_view_2026 PARTITION OF page_view FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');

INSERT INTO customer (email, full_name) VALUES ('ada@example.com', 'Ada Lovelace');
INSERT INTO purchase (customer_id, status, total) VALUES (1, 'paid', 42.00);
