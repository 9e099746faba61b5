//! In-memory world state per block, and its Merkle-Patricia state root.

use std::collections::HashSet;

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, TrieAccount, root::storage_root_unhashed};
use imbl::HashMap as SharedMap;
use op_alloy_consensus::L2_TO_L1_MESSAGE_PASSER_ADDRESS;
use revm::{
    Database, DatabaseCommit,
    bytecode::Bytecode,
    database::{AccountState, CacheDB},
    database_interface::DatabaseRef,
    primitives::{AddressMap, StorageKey, StorageValue},
    state::{Account, AccountInfo},
};

/// How many ancestor hashes BLOCKHASH can see (EIP-210 window).
const BLOCKHASH_WINDOW: u64 = 256;

/// One account of a snapshot: its info and its non-zero storage slots.
#[derive(Debug, Clone, Default)]
struct StoredAccount {
    info: AccountInfo,
    storage: SharedMap<U256, U256>,
}

/// The full state after one block: every account with its storage and code, plus the storage
/// root of each account (cached so only accounts whose storage changed are re-hashed).
///
/// The maps are persistent (structurally shared): a child block's state is its parent's plus
/// what the block changed, so the engines can keep many recent states without a full copy each
/// (the EIP-4788 and EIP-2935 ring buffers alone grow every state by three slots a block).
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    accounts: SharedMap<Address, StoredAccount>,
    contracts: SharedMap<B256, Bytecode>,
    block_hashes: SharedMap<u64, B256>,
    storage_roots: SharedMap<Address, B256>,
}

impl StateSnapshot {
    /// Builds a state from `(address, info, storage)` triples (the genesis alloc).
    pub fn from_alloc(
        accounts: impl IntoIterator<Item = (Address, AccountInfo, Vec<(U256, U256)>)>,
    ) -> Self {
        let mut snapshot = Self::default();
        let mut all = Vec::new();
        for (address, mut info, storage) in accounts {
            snapshot.insert_code(&mut info);
            let storage = storage.into_iter().filter(|(_, v)| !v.is_zero()).collect();
            snapshot
                .accounts
                .insert(address, StoredAccount { info, storage });
            all.push(address);
        }
        snapshot.refresh_storage_roots(all);
        snapshot
    }

    /// Keeps `info`'s code under its hash (as revm's in-memory database does).
    fn insert_code(&mut self, info: &mut AccountInfo) {
        if let Some(code) = &info.code
            && !code.is_empty()
        {
            if info.code_hash == revm::primitives::KECCAK_EMPTY || info.code_hash.is_zero() {
                info.code_hash = code.hash_slow();
            }
            self.contracts
                .entry(info.code_hash)
                .or_insert_with(|| code.clone());
        }
        if info.code_hash.is_zero() {
            info.code_hash = revm::primitives::KECCAK_EMPTY;
        }
    }

    /// Account info (balance, nonce, code hash) at this state, `None` if it does not exist.
    pub fn account(&self, address: &Address) -> Option<AccountInfo> {
        self.accounts
            .get(address)
            .map(|a| a.info.clone())
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
                .contracts
                .get(&info.code_hash)
                .map(|c| c.original_bytes())
                .unwrap_or_default(),
        }
    }

    /// One storage slot.
    pub fn storage(&self, address: &Address, slot: U256) -> U256 {
        self.accounts
            .get(address)
            .and_then(|a| a.storage.get(&slot).copied())
            .unwrap_or_default()
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
        let mut base = self.clone();
        base.block_hashes.insert(parent_number, parent_hash);
        if let Some(old) = parent_number.checked_sub(BLOCKHASH_WINDOW) {
            base.block_hashes.remove(&old);
        }
        ExecutionDb {
            db: CacheDB::new(base),
            dirty_storage: HashSet::new(),
        }
    }

    /// The Merkle-Patricia root over all existing, non-empty accounts (EIP-161 semantics).
    pub fn state_root(&self) -> B256 {
        let accounts = self.accounts.iter().filter_map(|(address, account)| {
            let info = &account.info;
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
            let root = self.accounts.get(&address).map_or(EMPTY_ROOT_HASH, |acc| {
                storage_root_unhashed(acc.storage.iter().map(|(k, v)| (B256::from(*k), *v)))
            });
            if root == EMPTY_ROOT_HASH {
                self.storage_roots.remove(&address);
            } else {
                self.storage_roots.insert(address, root);
            }
        }
    }
}

/// Reads for revm: what the in-memory database over an empty one answered before the state
/// was shared (absent accounts are `None`, absent slots zero, absent code empty).
impl DatabaseRef for StateSnapshot {
    type Error = core::convert::Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.accounts.get(&address).map(|a| a.info.clone()))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Ok(self.contracts.get(&code_hash).cloned().unwrap_or_default())
    }

    fn storage_ref(
        &self,
        address: Address,
        index: StorageKey,
    ) -> Result<StorageValue, Self::Error> {
        Ok(self.storage(&address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        // Outside the window revm answers zero without asking; inside it, a hash the chain did
        // not record gets the placeholder revm's empty database gives.
        Ok(self
            .block_hashes
            .get(&number)
            .copied()
            .unwrap_or_else(|| keccak256(number.to_string().as_bytes())))
    }
}

/// The database a block executes against: revm's in-memory cache over the parent state, which
/// records which accounts' storage changed, so the post-state only re-hashes those tries.
#[derive(Debug)]
pub struct ExecutionDb {
    db: CacheDB<StateSnapshot>,
    dirty_storage: HashSet<Address>,
}

impl ExecutionDb {
    /// Finishes execution: the parent state with this block's changes folded in, storage roots
    /// brought up to date.
    pub fn into_snapshot(self) -> StateSnapshot {
        let CacheDB {
            cache,
            db: mut state,
        } = self.db;
        for (hash, code) in cache.contracts {
            state.contracts.insert(hash, code);
        }
        for (address, account) in cache.accounts {
            match account.account_state {
                // Only read: nothing to fold.
                AccountState::None => {}
                AccountState::NotExisting => {
                    state.accounts.remove(&address);
                }
                AccountState::StorageCleared => {
                    let storage = account
                        .storage
                        .into_iter()
                        .filter(|(_, v)| !v.is_zero())
                        .collect();
                    state.accounts.insert(
                        address,
                        StoredAccount {
                            info: account.info,
                            storage,
                        },
                    );
                }
                AccountState::Touched => {
                    let entry = state.accounts.entry(address).or_default();
                    entry.info = account.info;
                    for (slot, value) in account.storage {
                        if value.is_zero() {
                            entry.storage.remove(&slot);
                        } else {
                            entry.storage.insert(slot, value);
                        }
                    }
                }
            }
        }
        state.refresh_storage_roots(self.dirty_storage);
        state
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
