// Append row groups to a Parquet file without decoding or rewriting its data (issue #5: the
// side-car append cost must not grow with the store).
//
// parquet_append(store, old_key, keep_rows, new_rows, out_key) writes under out_key (which may
// equal old_key) a Parquet file made of
//   1. the old file's bytes [0, footer start), copied as bytes in pieces of 4 MiB (row groups,
//      page indexes, bloom filters: never decoded),
//   2. the new file's bytes [4, footer start) (its row groups, column and offset indexes),
//   3. the new file's offset indexes again, re-encoded with their page offsets shifted (an
//      OffsetIndex holds absolute file offsets; the stale copies in 2. are never referenced),
//   4. a merged footer: the old FileMetaData (version, schema, key/value metadata such as
//      ARROW:schema, created_by, column orders and any field this code has no name for, all
//      kept) with row_groups = the old row groups that lie wholly within the first keep_rows
//      rows + the new file's row groups with every file offset shifted (RowGroup.file_offset,
//      ColumnChunk.file_offset, data/index/dictionary page, bloom filter, column index and
//      offset index offsets), ordinals renumbered, num_rows summed.
// The output is written through Store::open_writer, so it appears atomically (local: temporary
// file renamed into place; S3: one PUT or multipart completion) or not at all. Memory is bounded
// by the two footers plus one 4 MiB piece. Old row groups past keep_rows stay in the file as
// unreferenced bytes.
//
// Returns true when the file was written. Returns false, writing nothing, when such an append is
// not possible and the caller must rewrite the file itself: old_key missing; either file not a
// plaintext-footer Parquet file or its footer malformed (never a crash); encrypted files; column
// chunks stored in other files; the two schemas (SchemaElement lists), column orders or
// ARROW:schema key/value entries differ (readers apply the old file's Arrow schema to all rows);
// keep_rows above the old row count or not on an old row-group boundary; more than 32767 row
// groups with ordinals; anything else unexpected. *why_not (when given) receives the reason.
// Throws i2z::Error(IO) when the store or the new file cannot be read or written.
//
// Python (store_bindings.cpp), GIL released:
//   _core.parquet_append(store: _core.Store, old_key: str, keep_rows: int,
//                        new_rows: bytes | str | os.PathLike, out_key: str) -> bool
// keys are relative to the store (a directory or s3:// prefix); OSError on I/O failure.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <variant>

#include "i2z/store.hpp"

namespace i2z {

// The new rows as a Parquet file: a local file path, or the file's bytes.
using ParquetInput = std::variant<std::string, std::span<const std::uint8_t>>;

bool parquet_append(Store& store, const std::string& old_key, std::uint64_t keep_rows, const ParquetInput& new_rows,
                    const std::string& out_key, std::string* why_not = nullptr);

}  // namespace i2z
