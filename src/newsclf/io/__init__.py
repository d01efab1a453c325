"""Reading and writing users' data: tables in bounded chunks, atomic writes, text cleaning and
the text-column policy, label matching."""

from typing import TYPE_CHECKING

from newsclf.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "STDIN": "tables",
        "EXTENSIONS": "tables",
        "FORMATS": "tables",
        "TableFormat": "tables",
        "TableReader": "tables",
        "AtomicTableWriter": "writers",
        "JSON_FIELD": "tables",
        "is_json_field": "tables",
        "rechunk": "tables",
        "LineReader": "line_reader",
        "Chunk": "tables",
        "SkippedLine": "line_reader",
        "detect_format": "tables",
        "delimiter_for": "tables",
        "is_url": "tables",
        "table_files": "tables",
        "sniff_format": "tables",
        "read_table": "tables",
        "atomic_file": "atomic",
        "check_target": "atomic",
        "remove_stale_partials": "atomic",
        "atomic_directory": "atomic",
        "write_text_atomic": "atomic",
        "write_json_atomic": "atomic",
        "clean_text": "text",
        "join_columns": "text",
        "prepare_texts": "text",
        "parse_text_columns": "text",
        "choose_text_columns": "text",
        "texts_from_rows": "text",
        "model_texts": "text",
        "label_key": "labels",
        "label_names_from": "labels",
        "LabelMatcher": "labels",
        "NO_LABEL": "labels",
    },
)

if TYPE_CHECKING:
    from newsclf.io.atomic import (
        atomic_directory,
        atomic_file,
        check_target,
        remove_stale_partials,
        write_json_atomic,
        write_text_atomic,
    )
    from newsclf.io.labels import NO_LABEL, LabelMatcher, label_key, label_names_from
    from newsclf.io.line_reader import LineReader, SkippedLine
    from newsclf.io.tables import (
        EXTENSIONS,
        FORMATS,
        JSON_FIELD,
        STDIN,
        Chunk,
        TableFormat,
        TableReader,
        delimiter_for,
        detect_format,
        is_json_field,
        is_url,
        read_table,
        rechunk,
        sniff_format,
        table_files,
    )
    from newsclf.io.text import (
        choose_text_columns,
        clean_text,
        join_columns,
        model_texts,
        parse_text_columns,
        prepare_texts,
        texts_from_rows,
    )
    from newsclf.io.writers import AtomicTableWriter
