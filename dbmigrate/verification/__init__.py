"""Verification, used by `migrate` after the copy and by `verify` on its own, for every pair of ends:
counts, references, values and order-independent checksums (dbmigrate.checksum), and the servers'
own checksums where both ends are PostgreSQL.

- `sql`: a SQL target (or a Parquet snapshot read as one) against what the source gave;
- `mongo`: a MongoDB target against its source through the layout's schema map.
"""
