//! Rows read into named structs by column name: a query's columns are named in its SQL (`AS`
//! where needed) and read by that name, never by position.
//!
//! Owns [`FromRow`] and the [`typed_row!`] macro that writes it. It must not hold SQL.

use tokio_postgres::{Error, Row};

/// A struct read from a row by column names.
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, Error>;

    /// Every row, or the first error.
    fn from_rows(rows: &[Row]) -> Result<Vec<Self>, Error> {
        rows.iter().map(Self::from_row).collect()
    }
}

/// A struct whose fields are read from the columns of the same names.
///
/// ```text
/// typed_row! {
///     /// A member's open load.
///     struct Load { owner: String, open: i64 }
/// }
/// ```
macro_rules! typed_row {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $fvis:vis $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        $vis struct $name { $($(#[$fm])* $fvis $f: $t),* }

        impl $crate::db::row::FromRow for $name {
            fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
                Ok($name { $($f: row.try_get(stringify!($f))?),* })
            }
        }
    };
}
pub(crate) use typed_row;
