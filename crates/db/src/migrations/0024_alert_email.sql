-- A price alert may also be mailed to its owner when it fires.
ALTER TABLE price_alerts ADD COLUMN email BOOLEAN NOT NULL DEFAULT FALSE
