//! The filter stage between receiving a message and queueing it.
//!
//! Every message passes here after its data is in the spool's `tmp/` and before it is
//! committed and answered with `250`, so a message that must be refused gets its 5xx at SMTP
//! time and never needs a bounce. Today the stage refuses mail loops (more `Received:` headers
//! than `smtp.max_received_headers`); the scanning engine (issue 3) and the actions on verdicts
//! (issue 4) plug in here.

use smtp::Reply;

/// What the filter decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterVerdict {
    /// Queue the message.
    Accept,
    /// Refuse it at SMTP time with this reply.
    Refuse(Reply),
}

/// What the receiving side learnt about a message while it streamed in.
#[derive(Debug, Clone)]
pub struct MessageFacts {
    /// `Received:` header fields in the message as received.
    pub received_headers: usize,
}

/// The filter stage.
#[derive(Debug, Clone)]
pub struct Filter {
    /// More `Received:` headers than this is a loop (RFC 5321 §6.3).
    pub max_received_headers: usize,
}

impl Filter {
    /// Decides on a received message.
    pub async fn check(&self, facts: &MessageFacts) -> FilterVerdict {
        if facts.received_headers > self.max_received_headers {
            let text = format!("Too many hops ({} Received headers): mail loop?", facts.received_headers);
            return FilterVerdict::Refuse(Reply::new(554, (5, 4, 6), text));
        }
        FilterVerdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loops_are_refused() {
        let f = Filter { max_received_headers: 30 };
        let facts = |n| MessageFacts { received_headers: n };
        assert_eq!(f.check(&facts(30)).await, FilterVerdict::Accept);
        let FilterVerdict::Refuse(r) = f.check(&facts(31)).await else { panic!("31 hops accepted") };
        assert_eq!((r.code, r.enhanced), (554, Some((5, 4, 6))));
    }
}
