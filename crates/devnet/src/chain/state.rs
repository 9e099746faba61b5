//! In-memory world state per block, and its Merkle-Patricia state root.

use std::collections::{HashMap, HashSet};

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, TrieAccount, root::storage_root_unhashed};
use op_alloy_consensus::L2_TO_L1_MESSAGE_PASSER_ADDRESS;
use revm::{
    Database, DatabaseCommit,
    bytecode::Bytecode,
    database::{CacheDB, EmptyDB},
    database_interface::DatabaseRef,
    primitives::{AddressMap, StorageKey, StorageValue},
    state::{Account, AccountInfo},
};

/// How many ancestor hashes BLOCKHASH can see (EIP-210 window).
const BLOCKHASH_WINDOW: u64 = 256;

/// The full state after one block: every account with its storage and code, plus the storage
/// root of each account (cached so only accounts whose storage changed are re-hashed).
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    db: CacheDB<EmptyDB>,
    storage_roots: HashMap<Address, B256>,
}

impl StateSnapshot {
    /// Builds a state from `(address, info, storage)` triples (the genesis alloc).
    pub fn from_alloc(
        accounts: impl IntoIterator<Item = (Address, AccountInfo, Vec<(U256, U256)>)>,
    ) -> Self {
        let mut db = CacheDB::new(EmptyDB::default());
        for (address, info, storage) in accounts {
            db.insert_account_info(address, info);
            for (slot, value) in storage {
                // EmptyDB cannot fail.
                let _ = db.insert_account_storage(address, slot, value);
            }
        }
        let mut snapshot = Self {
            db,
            storage_roots: HashMap::new(),
        };
        let all: Vec<Address> = snapshot.db.cache.accounts.keys().copied().collect();
        snapshot.refresh_storage_roots(all);
        snapshot
    }

    /// Account info (balance, nonce, code hash) at this state, `None` if it does not exist.
    pub fn account(&self, address: &Address) -> Option<AccountInfo> {
        self.db
            .cache
            .accounts
            .get(address)
            .and_then(|a| a.info())
            .filter(|info| !info.is_empty())
    }

    /// Balance of `address` (zero when absent).
    pub fn balance(&self, address: &Address) -> U256 {
        self.account(address).map(|a| a.balance).unwrap_or_default()
    }

    /// Nonce of `address` (zero when absent).
    pub fn nonce(&self, address: &Address) -> u64 {
        self.account(address).map(|a| a.nonce).unwrap_or_default()
    }

    /// Code of `address` (empty when absent or without code).
    pub fn code(&self, address: &Address) -> alloy_primitives::Bytes {
        let Some(info) = self.account(address) else {
            return Default::default();
        };
        match &info.code {
            Some(code) => code.original_bytes(),
            None => self
                .db
                .code_by_hash_ref(info.code_hash)
                .map(|c| c.original_bytes())
                .unwrap_or_default(),
        }
    }

    /// One storage slot.
    pub fn storage(&self, address: &Address, slot: U256) -> U256 {
        self.db.storage_ref(*address, slot).unwrap_or_default()
    }

    /// Storage root of the L2ToL1MessagePasser predeploy: Isthmus' `withdrawalsRoot`.
    pub fn message_passer_storage_root(&self) -> B256 {
        self.storage_roots
            .get(&L2_TO_L1_MESSAGE_PASSER_ADDRESS)
            .copied()
            .unwrap_or(EMPTY_ROOT_HASH)
    }

    /// Starts executing a child block on top of this state, with `parent_number`'s hash visible
    /// to BLOCKHASH.
    pub fn child(&self, parent_number: u64, parent_hash: B256) -> ExecutionDb {
        let mut db = self.db.clone();
        db.cache
            .block_hashes
            .insert(U256::from(parent_number), parent_hash);
        if let Some(old) = parent_number.checked_sub(BLOCKHASH_WINDOW) {
            db.cache.block_hashes.remove(&U256::from(old));
        }
        ExecutionDb {
            db,
            storage_roots: self.storage_roots.clone(),
            dirty_storage: HashSet::new(),
        }
    }

    /// The Merkle-Patricia root over all existing, non-empty accounts (EIP-161 semantics).
    pub fn state_root(&self) -> B256 {
        let accounts = self
            .db
            .cache
            .accounts
            .iter()
            .filter_map(|(address, account)| {
                let info = account.info()?;
                if info.is_empty() {
                    return None;
                }
                let storage_root = self
                    .storage_roots
                    .get(address)
                    .copied()
                    .unwrap_or(EMPTY_ROOT_HASH);
                Some((
                    keccak256(address),
                    TrieAccount {
                        nonce: info.nonce,
                        balance: info.balance,
                        storage_root,
                        code_hash: info.code_hash,
                    },
                ))
            });
        alloy_trie::root::state_root_unsorted(accounts)
    }

    fn refresh_storage_roots(&mut self, addresses: impl IntoIterator<Item = Address>) {
        for address in addresses {
            let root = self
                .db
                .cache
                .accounts
                .get(&address)
                .map_or(EMPTY_ROOT_HASH, |acc| {
                    storage_root_unhashed(
                        acc.storage
                            .iter()
                            .filter(|(_, v)| !v.is_zero())
                            .map(|(k, v)| (B256::from(*k), *v)),
                    )
                });
            if root == EMPTY_ROOT_HASH {
                self.storage_roots.remove(&address);
            } else {
                self.storage_roots.insert(address, root);
            }
        }
    }
}

/// The database a block executes against: a copy of the parent state that records which
/// accounts' storage changed, so the post-state only re-hashes those storage tries.
#[derive(Debug)]
pub struct ExecutionDb {
    db: CacheDB<EmptyDB>,
    storage_roots: HashMap<Address, B256>,
    dirty_storage: HashSet<Address>,
}

impl ExecutionDb {
    /// Finishes execution: the post-state with storage roots brought up to date.
    pub fn into_snapshot(self) -> StateSnapshot {
        let mut snapshot = StateSnapshot {
            db: self.db,
            storage_roots: self.storage_roots,
        };
        snapshot.refresh_storage_roots(self.dirty_storage);
        snapshot
    }
}

impl Database for ExecutionDb {
    type Error = core::convert::Infallible;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.db.basic(address)
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.db.code_by_hash(code_hash)
    }

    fn storage(
        &mut self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, Self::Error> {
        Database::storage(&mut self.db, address, index)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.db.block_hash(number)
    }
}

impl DatabaseCommit for ExecutionDb {
    fn commit(&mut self, changes: AddressMap<Account>) {
        for (address, account) in &changes {
            if account.is_touched()
                && (account.is_selfdestructed()
                    || account.is_created()
                    || account.storage.values().any(|slot| slot.is_changed()))
            {
                self.dirty_storage.insert(*address);
            }
        }
        self.db.commit(changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_has_empty_root() {
        assert_eq!(StateSnapshot::default().state_root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn committed_storage_change_updates_storage_root() {
        let addr = Address::repeat_byte(7);
        let base = StateSnapshot::from_alloc([(
            addr,
            AccountInfo {
                balance: U256::from(1),
                ..Default::default()
            },
            vec![],
        )]);
        let mut exec = base.child(0, B256::ZERO);
        let mut account = Account::from(AccountInfo {
            balance: U256::from(1),
            ..Default::default()
        });
        account.mark_touch();
        account.storage.insert(
            U256::from(1),
            revm::state::EvmStorageSlot::new_changed(U256::ZERO, U256::from(5), 0),
        );
        exec.commit(AddressMap::from_iter([(addr, account)]));
        let after = exec.into_snapshot();
        assert_eq!(after.storage(&addr, U256::from(1)), U256::from(5));
        assert_ne!(after.state_root(), base.state_root());
        assert_eq!(
            after.storage_roots.get(&addr).copied(),
            Some(storage_root_unhashed([(
                B256::from(U256::from(1)),
                U256::from(5)
            )]))
        );
    }
}
