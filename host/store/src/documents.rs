//! What several nodes share — targets, settings and the like — kept as small named JSON documents,
//! each with a revision. A writer reads a document, changes it and writes it back only if its revision
//! is still the one it read (compare-and-swap); when another writer got in first the write is refused
//! and the caller reads again and retries, so two nodes changing one document at once lose nothing.

/// One stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its text (JSON).
    pub body: String,
    /// Its revision: 1 when first written, one more at each write.
    pub revision: i64,
}

/// The documents of a store. Every method is one transaction.
#[async_trait::async_trait]
pub trait Documents: Send + Sync {
    /// The document `name`, if stored.
    async fn document(&self, name: &str) -> crate::Result<Option<Document>>;

    /// Writes the document `name` if its revision is still `expected` (0: it must not exist yet).
    /// Returns the new revision, or `None` when another writer changed it first (read it again and
    /// retry).
    async fn put_document(
        &self,
        name: &str,
        body: &str,
        expected: i64,
    ) -> crate::Result<Option<i64>>;

    /// The revision of the document `name` (0 when not stored): a cheap check of whether it changed.
    async fn document_revision(&self, name: &str) -> crate::Result<i64>;
}
