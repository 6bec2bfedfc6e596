-- The price table a contract is billed by ([billing] names them); NULL: the default one.
ALTER TABLE contracts ADD COLUMN price_table TEXT;
