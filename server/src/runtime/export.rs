//! CSV exports of contacts and of participants chosen by criteria, written
//! page by page (keyset on id) so a million rows never sit in memory.
//!
//! Every cell that a spreadsheet would read as a formula (starting with
//! `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`: an
//! exported file must never run code when opened. The import undoes it.

use std::borrow::Cow;

use axum::body::Bytes;
use futures_util::Stream;
use sqlx::Row;

use crate::error::Result;

use super::bulk::Criteria;
use super::contacts::ContactSearch;
use crate::db::{Pool, Sql};

/// Rows per page read from the database.
const PAGE: i64 = 2_000;

/// A cell as written: prefixed with `'` when a spreadsheet would take it for a formula.
pub fn escape_cell(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// One CSV record, escaped.
fn record<I, S>(out: &mut csv::Writer<Vec<u8>>, cells: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let cells: Vec<String> = cells.into_iter().map(|c| escape_cell(c.as_ref()).into_owned()).collect();
    out.write_record(&cells).expect("writing to memory");
}

fn take(out: csv::Writer<Vec<u8>>) -> Vec<u8> {
    out.into_inner().expect("writing to memory")
}

/// What an export is: a header, then pages after a cursor.
pub trait Export: Send + Sync + 'static {
    fn header(&self) -> Vec<String>;
    /// The next page of CSV text after `after` (an id): the text, the last id in it and its row count; None when done.
    fn page(&self, pool: &Pool, after: i64) -> impl std::future::Future<Output = Result<Option<(Vec<u8>, i64, usize)>>> + Send;
}

/// The export as a stream of CSV chunks, for a response body. A database
/// error ends the stream with an error (the client sees a cut-off file).
pub fn stream<E: Export>(pool: Pool, export: E) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send {
    let mut header = csv::Writer::from_writer(Vec::new());
    record(&mut header, export.header());
    let first = Bytes::from(take(header));
    let state = (pool, export, Some(0i64), Some(first));
    futures_util::stream::unfold(state, |(pool, export, after, first)| async move {
        if let Some(first) = first {
            return Some((Ok(first), (pool, export, after, None)));
        }
        let after = after?;
        match export.page(&pool, after).await {
            Ok(Some((bytes, last, _))) => Some((Ok(Bytes::from(bytes)), (pool, export, Some(last), None))),
            Ok(None) => None,
            Err(err) => {
                tracing::error!(error = %err, "export stopped");
                Some((Err(std::io::Error::other("the export stopped; see the server log")), (pool, export, None, None)))
            }
        }
    })
}

/// Contacts matching a search, with one column per custom field.
pub struct ContactsExport {
    pub search: ContactSearch,
    pub fields: Vec<String>,
}

impl ContactsExport {
    /// Reads the custom field names in use, for the columns.
    pub async fn new(pool: &Pool, search: ContactSearch) -> Result<Self> {
        let fields: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT j.key FROM contacts c, json_each(c.fields) j WHERE c.deleted_at IS NULL ORDER BY 1 LIMIT 500",
        )
        .fetch_all(pool)
        .await?;
        Ok(ContactsExport { search, fields })
    }
}

const CONTACT_COLUMNS: [&str; 9] = ["id", "email", "mobile", "timezone", "owner", "lists", "opted_out", "blocked", "created_at"];

impl Export for ContactsExport {
    fn header(&self) -> Vec<String> {
        CONTACT_COLUMNS.iter().map(|c| c.to_string()).chain(self.fields.iter().cloned()).collect()
    }

    async fn page(&self, pool: &Pool, after: i64) -> Result<Option<(Vec<u8>, i64, usize)>> {
        let mut query: Sql = Sql::new(
            "SELECT c.id, c.email, c.mobile, c.timezone, c.owner,
                    (SELECT group_concat(l.name, ';') FROM list_members m JOIN lists l ON l.id = m.list_id WHERE m.contact_id = c.id),
                    c.opted_out, c.blocked, c.created_at, c.fields
             FROM contacts c WHERE c.id > ",
        );
        query.push_bind(after).push(" AND ");
        self.search.push_where(&mut query);
        query.push(" ORDER BY c.id LIMIT ").push_bind(PAGE);
        let rows = query.build().fetch_all(pool).await?;
        let Some(last) = rows.last().map(|r| r.get::<i64, _>(0)) else { return Ok(None) };
        let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 128));
        for row in &rows {
            let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(row.get::<&str, _>(9)).unwrap_or_default();
            let opted: Vec<String> = serde_json::from_str(row.get::<&str, _>(6)).unwrap_or_default();
            let mut cells = vec![
                row.get::<i64, _>(0).to_string(),
                row.get::<Option<String>, _>(1).unwrap_or_default(),
                row.get::<Option<String>, _>(2).unwrap_or_default(),
                row.get::<Option<String>, _>(3).unwrap_or_default(),
                row.get::<Option<String>, _>(4).unwrap_or_default(),
                row.get::<Option<String>, _>(5).unwrap_or_default(),
                opted.join(";"),
                if row.get::<i64, _>(7) != 0 { "yes".into() } else { String::new() },
                row.get::<String, _>(8),
            ];
            cells.extend(self.fields.iter().map(|f| match fields.get(f) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            }));
            record(&mut out, cells);
        }
        Ok(Some((take(out), last, rows.len())))
    }
}

/// Participants matching bulk criteria, with their contact.
pub struct ParticipantsExport {
    pub criteria: Criteria,
    /// Only the participants a bulk run snapshotted, when set.
    pub run: Option<i64>,
}

const PARTICIPANT_COLUMNS: [&str; 15] = [
    "participant_id",
    "flow_id",
    "flow",
    "version",
    "status",
    "step",
    "pass_count",
    "next_run_at",
    "reserved_for",
    "callback_at",
    "contact_id",
    "email",
    "mobile",
    "timezone",
    "owner",
];

fn time_text(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()).map(|t| t.to_string()).unwrap_or_default()
}

impl Export for ParticipantsExport {
    fn header(&self) -> Vec<String> {
        PARTICIPANT_COLUMNS.iter().map(|c| c.to_string()).collect()
    }

    async fn page(&self, pool: &Pool, after: i64) -> Result<Option<(Vec<u8>, i64, usize)>> {
        let mut query: Sql = Sql::new(
            "SELECT p.id, p.flow_id, f.name, p.version, p.status, p.step, p.pass_count, p.next_run_at, p.reserved_for, p.callback_at,
                    p.contact_id, c.email, c.mobile, c.timezone, c.owner
             FROM participants p JOIN contacts c ON c.id = p.contact_id JOIN flows f ON f.id = p.flow_id
             WHERE p.id IN (SELECT id FROM participants WHERE id > ",
        );
        query.push_bind(after).push(" AND ");
        match self.run {
            Some(run) => {
                query.push("id IN (SELECT participant_id FROM bulk_run_items WHERE run_id = ").push_bind(run).push(")");
            }
            None => self.criteria.push_matching(&mut query),
        }
        query.push(" ORDER BY id LIMIT ").push_bind(PAGE).push(") ORDER BY p.id");
        let rows = query.build().fetch_all(pool).await?;
        let Some(last) = rows.last().map(|r| r.get::<i64, _>(0)) else { return Ok(None) };
        let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 128));
        for row in &rows {
            record(
                &mut out,
                [
                    row.get::<i64, _>(0).to_string(),
                    row.get::<i64, _>(1).to_string(),
                    row.get::<String, _>(2),
                    row.get::<i64, _>(3).to_string(),
                    row.get::<String, _>(4),
                    row.get::<Option<String>, _>(5).unwrap_or_default(),
                    row.get::<i64, _>(6).to_string(),
                    time_text(row.get(7)),
                    row.get::<Option<String>, _>(8).unwrap_or_default(),
                    time_text(row.get(9)),
                    row.get::<i64, _>(10).to_string(),
                    row.get::<Option<String>, _>(11).unwrap_or_default(),
                    row.get::<Option<String>, _>(12).unwrap_or_default(),
                    row.get::<Option<String>, _>(13).unwrap_or_default(),
                    row.get::<Option<String>, _>(14).unwrap_or_default(),
                ],
            );
        }
        Ok(Some((take(out), last, rows.len())))
    }
}

/// Writes a whole export to `out` (for the ZIP of a data file); returns the data rows written.
pub async fn write_all<E: Export, W: std::io::Write>(pool: &Pool, export: &E, out: &mut W) -> Result<u64> {
    let mut header = csv::Writer::from_writer(Vec::new());
    record(&mut header, export.header());
    out.write_all(&take(header)).map_err(|err| crate::error::Error::Internal(err.into()))?;
    let (mut after, mut rows) = (0, 0u64);
    while let Some((bytes, last, count)) = export.page(pool, after).await? {
        rows += count as u64;
        out.write_all(&bytes).map_err(|err| crate::error::Error::Internal(err.into()))?;
        after = last;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_escaped_and_nothing_else() {
        for risky in ["=SUM(A1:A9)", "+15550100", "-2+3", "@cmd", "\tx", "\rx", "=HYPERLINK(\"http://evil\")"] {
            assert_eq!(escape_cell(risky), format!("'{risky}"), "{risky:?}");
        }
        for plain in ["", "ada@example.com", "O'Brien", " =not at the start", "1-2", "'=already quoted"] {
            assert_eq!(escape_cell(plain), plain, "{plain:?}");
        }
    }

    #[test]
    fn records_escape_every_cell_and_keep_csv_quoting() {
        let mut out = csv::Writer::from_writer(Vec::new());
        record(&mut out, ["=1+1", "a,b", "say \"hi\"", "@x"]);
        assert_eq!(String::from_utf8(take(out)).unwrap(), "'=1+1,\"a,b\",\"say \"\"hi\"\"\",'@x\n");
    }
}
