use async_trait::async_trait;
use codecs::CodecConfig;
use runtime_core::{Position, ReadItem, RecordSource, Result};

/// Records given inline (a stream descriptor's `Data`, a job document's embedded input):
/// each string is one message, decoded on its own.
pub struct InlineSource {
    codec: CodecConfig,
    messages: std::vec::IntoIter<Vec<u8>>,
    next: u64,
    total: u64,
}

impl InlineSource {
    pub fn new(messages: Vec<Vec<u8>>, codec: CodecConfig) -> InlineSource {
        InlineSource {
            codec,
            total: messages.len() as u64,
            messages: messages.into_iter(),
            next: 0,
        }
    }
}

#[async_trait]
impl RecordSource for InlineSource {
    async fn read_batch(&mut self, max: usize) -> Result<Option<Vec<ReadItem>>> {
        let mut items = Vec::new();
        for msg in self.messages.by_ref().take(max) {
            self.next += 1;
            let position = Position::record(self.next);
            items.push(codecs::read_message(&self.codec, &msg, position));
        }
        Ok((!items.is_empty()).then_some(items))
    }

    fn describe(&self) -> String {
        "inline".to_owned()
    }

    fn progress(&self) -> Option<f64> {
        Some(if self.total == 0 {
            1.0
        } else {
            self.next as f64 / self.total as f64
        })
    }
}
