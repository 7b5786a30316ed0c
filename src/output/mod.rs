//! What a run leaves behind: the report file and its summary (whole or
//! streamed, with its breakdown by rule, reason and storage), the report's
//! HTML page, the dotenv and metrics count files, merged shard reports, and
//! inventory files. Built from domain types only: imports only `domain`.

pub mod breakdown;
pub mod count_files;
pub mod html;
pub mod inventory;
pub mod inventory_stream;
pub mod journal;
pub mod merge;
pub mod plan;
pub mod report;
pub mod report_stream;
pub mod restore;
pub mod sections;
