//! The index from client id to session key, holding no copy of the ids: each session keeps
//! its id once, and the table keeps only keys (8 B a slot). A map keyed by `ClientId` held
//! a 32-B key in every slot, empty or not, plus a shared-buffer header (32 B) for the
//! second handle on each id: about 100 B per idle connection at 19,500 of them.

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::session::SessionKey;

use super::fx_hash;
#[cfg(test)]
use super::Client;
use super::Clients;

#[derive(Debug, Default)]
pub(super) struct ClientIds {
    /// Every key here names a session in the shard's `clients`: the table finds an id by
    /// looking at the session's own copy.
    table: HashTable<SessionKey>,
}

impl ClientIds {
    /// The session holding client id `id`.
    pub fn get(&self, id: &str, clients: &Clients) -> Option<SessionKey> {
        self.table
            .find(fx_hash(id), |key| id_of(clients, *key) == Some(id))
            .copied()
    }

    /// `key`'s session (already in `clients`) now holds its client id, in place of any
    /// earlier session with that id.
    pub fn insert(&mut self, key: SessionKey, clients: &Clients) {
        let Some(id) = id_of(clients, key) else {
            debug_assert!(false, "a session is indexed after it is stored");
            return;
        };
        let entry = self.table.entry(
            fx_hash(id),
            |other| id_of(clients, *other) == Some(id),
            |other| fx_hash(id_of(clients, *other).unwrap_or_default()),
        );
        match entry {
            Entry::Occupied(mut slot) => *slot.get_mut() = key,
            Entry::Vacant(slot) => {
                slot.insert(key);
            }
        }
    }

    /// Forgets `key`, whose client id is `id`, if it is the session indexed for `id`.
    pub fn remove(&mut self, key: SessionKey, id: &str) {
        if let Ok(slot) = self.table.find_entry(fx_hash(id), |other| *other == key) {
            slot.remove();
        }
    }
}

fn id_of(clients: &Clients, key: SessionKey) -> Option<&str> {
    let id = clients
        .get(&key)
        .map(|client| client.session.client_id.as_str());
    debug_assert!(id.is_some(), "an indexed session is stored");
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Queue, Session};
    use std::num::NonZeroU64;

    fn store(clients: &mut Clients, key: u64, id: &str) -> SessionKey {
        let key = SessionKey(NonZeroU64::new(key).expect("non-zero"));
        let session = Session::new(id, 10, Queue::new(10, 100));
        clients.insert(Box::new(Client {
            key,
            session,
            conn: None,
        }));
        key
    }

    #[test]
    fn finds_replaces_and_forgets_by_the_sessions_own_id() {
        let mut clients = Clients::default();
        let mut ids = ClientIds::default();
        // Enough to make the table grow (and rehash through `clients`) several times.
        let keys: Vec<_> = (1..=200)
            .map(|n| {
                let key = store(&mut clients, n, &format!("c{n}"));
                ids.insert(key, &clients);
                key
            })
            .collect();
        assert_eq!(ids.get("c7", &clients), Some(keys[6]));
        assert_eq!(ids.get("c0", &clients), None);

        // A new session with the same id replaces the old one in the index.
        let newer = store(&mut clients, 1000, "c7");
        ids.insert(newer, &clients);
        assert_eq!(ids.get("c7", &clients), Some(newer));
        // The old session ending does not unindex the new one.
        ids.remove(keys[6], "c7");
        assert_eq!(ids.get("c7", &clients), Some(newer));
        clients.remove(&keys[6]);

        clients.remove(&newer);
        ids.remove(newer, "c7");
        assert_eq!(ids.get("c7", &clients), None);
        assert_eq!(ids.get("c8", &clients), Some(keys[7]));
    }
}
