//! The placement rule, without I/O: given the registry's answer (who owns the room) and the
//! live nodes, what a join does next. [`super::Cluster::place`] runs it against Redis.

use serde::{Deserialize, Serialize};

/// One node as it registers itself in Redis (and as `/cluster` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// The base URL of its signalling (`ws://host:port`).
    pub url: String,
    /// Rooms it runs.
    pub rooms: u64,
    /// Peers in its rooms.
    pub peers: u64,
}

impl NodeInfo {
    /// What "least loaded" compares: peers first (media cost follows them), then rooms, then
    /// the id so that every node picks the same one from the same view.
    fn load_key(&self) -> (u64, u64, &str) {
        (self.peers, self.rooms, &self.id)
    }
}

/// What a join does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The room is ours: attach here.
    Here,
    /// The room lives on this live node: relay there.
    Relay(NodeInfo),
    /// Nobody owns the room: claim it for this node (ours or another), atomically.
    Claim(NodeInfo),
    /// The owner is not among the live nodes: wait for its lease to run out (or for the view
    /// to catch up), then decide again.
    Wait,
    /// A relayed join reached a node that does not own the room.
    Misrouted,
}

/// Decides for `me` given the room's `owner` and the live `nodes` (which may or may not list
/// `me`); `relayed` joins came through another node and are only ever placed here.
pub fn decide(me: &NodeInfo, owner: Option<&str>, nodes: &[NodeInfo], relayed: bool) -> Decision {
    match owner {
        Some(owner) if owner == me.id => Decision::Here,
        Some(_) if relayed => Decision::Misrouted,
        None if relayed => Decision::Claim(me.clone()),
        Some(owner) => match nodes.iter().find(|n| n.id == owner) {
            Some(node) => Decision::Relay(node.clone()),
            None => Decision::Wait,
        },
        None => {
            let least = nodes
                .iter()
                .chain(std::iter::once(me))
                .min_by(|a, b| a.load_key().cmp(&b.load_key()))
                .unwrap_or(me);
            Decision::Claim(least.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, rooms: u64, peers: u64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            url: format!("ws://{id}"),
            rooms,
            peers,
        }
    }

    #[test]
    fn a_room_owned_by_this_node_is_joined_here() {
        let me = node("a", 1, 1);
        assert_eq!(decide(&me, Some("a"), &[], false), Decision::Here);
        assert_eq!(decide(&me, Some("a"), &[], true), Decision::Here);
    }

    #[test]
    fn a_room_owned_by_a_live_node_is_relayed_there() {
        let me = node("a", 0, 0);
        let nodes = [me.clone(), node("b", 5, 9)];
        assert_eq!(
            decide(&me, Some("b"), &nodes, false),
            Decision::Relay(node("b", 5, 9))
        );
    }

    #[test]
    fn a_room_whose_owner_is_not_live_waits_for_the_lease() {
        let me = node("a", 0, 0);
        assert_eq!(
            decide(&me, Some("gone"), std::slice::from_ref(&me), false),
            Decision::Wait
        );
    }

    #[test]
    fn a_new_room_goes_to_the_node_with_fewest_peers_then_rooms_then_id() {
        let me = node("c", 1, 4);
        let nodes = [node("a", 2, 3), node("b", 1, 3), me.clone()];
        assert_eq!(
            decide(&me, None, &nodes, false),
            Decision::Claim(node("b", 1, 3))
        );
        let tied = [node("b", 1, 3), node("a", 1, 3)];
        assert_eq!(
            decide(&me, None, &tied, false),
            Decision::Claim(node("a", 1, 3))
        );
    }

    #[test]
    fn a_node_that_sees_no_other_node_claims_new_rooms_itself() {
        let me = node("a", 9, 99);
        assert_eq!(decide(&me, None, &[], false), Decision::Claim(me.clone()));
    }

    #[test]
    fn a_relayed_join_is_placed_here_or_refused_never_relayed_again() {
        let me = node("a", 9, 99);
        let nodes = [node("b", 0, 0)];
        assert_eq!(decide(&me, None, &nodes, true), Decision::Claim(me.clone()));
        assert_eq!(decide(&me, Some("b"), &nodes, true), Decision::Misrouted);
    }
}
