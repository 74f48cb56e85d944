//! Log lines to signals (filled in by the line-parser work of issue 15).
