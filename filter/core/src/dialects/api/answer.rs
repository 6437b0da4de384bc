//! What a management endpoint answers: the reply and the writes to apply with it, or the error
//! reply.

use crate::kv::KvWrite;
use crate::reply::Reply;

pub(super) type Answer = Result<(Reply, Vec<KvWrite>), Reply>;
