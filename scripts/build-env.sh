# Sourced by the scripts that build the mobile library (build-size.sh,
# build-android.sh, build-ios.sh): the bundled SQLite without what the
# device database never uses — full-text search (FTS3/FTS5), R-trees, JSON
# functions, statistics tables, run-time extension loading, shared cache,
# column metadata, declared column types, deprecated interfaces; with the
# other options SQLite recommends for size and speed. None changes the SQL
# grammar (such options would need SQLite's canonical sources).
export LIBSQLITE3_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5 \
-USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_ENABLE_STAT4 -USQLITE_ENABLE_COLUMN_METADATA \
-USQLITE_SOUNDEX -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_DEPRECATED \
-DSQLITE_OMIT_JSON -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_OMIT_PROGRESS_CALLBACK -DSQLITE_OMIT_COMPLETE \
-DSQLITE_OMIT_GET_TABLE -DSQLITE_OMIT_DECLTYPE -DSQLITE_DEFAULT_MEMSTATUS=0 -DSQLITE_MAX_EXPR_DEPTH=0 \
-DSQLITE_LIKE_DOESNT_MATCH_BLOBS"

# No unwind tables for the C code (SQLite, ring's C): no Rust panic ever
# unwinds through it (the library registers no SQLite callbacks), and the
# tables are 80 KB.
export CFLAGS="${CFLAGS:-} -fno-asynchronous-unwind-tables -fno-unwind-tables"

# The linker folds identical functions in the shared library (lld's ICF).
# Each script passes it to the final link only, so dependencies are not
# rebuilt for it.
mobile_link_args=(-C link-arg=-Wl,--icf=all)
