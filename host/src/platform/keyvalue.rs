//! `wasi:keyvalue@0.2.0-draft2` — `store`, `atomics` and `batch` — as Spin 3
//! and 4 expose it. A bucket is a key-value label from `spin.toml`, opened
//! under the same `key_value_stores` grant as Spin's key-value and holding the
//! same data.
//!
//! Where Spin's behaviour is defined it is kept: `list-keys` returns every key
//! at once and refuses a cursor; a failed swap hands back a fresh handle that
//! has already read the newer value. Where Spin's stores differ from the WIT,
//! the WIT wins: `get-many` has an entry (`none`) for every absent key, and a
//! swap of a key that was absent fails once somebody has created it.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, Resource};

use super::OpenRefused;
use super::wasi::keyvalue::{atomics, batch, store};
use crate::kv;
use crate::state::RequestState;

pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasSelf<RequestState>>(linker, |state| state)?;
    atomics::add_to_linker::<_, HasSelf<RequestState>>(linker, |state| state)?;
    batch::add_to_linker::<_, HasSelf<RequestState>>(linker, |state| state)?;
    Ok(())
}

/// An open bucket.
pub struct Bucket {
    store: kv::Store,
}

/// A compare-and-swap handle: its store and key, and the watch on that key.
pub struct Cas {
    store: kv::Store,
    key: String,
    watch: Box<dyn kv::Watch>,
}

fn store_error(err: kv::Error) -> store::Error {
    store::Error::Other(err.to_string())
}

type StoreResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl RequestState {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<kv::Store> {
        Ok(Arc::clone(&self.table.get(bucket)?.store))
    }

    /// Watches `key` and hands the guest a handle to it.
    async fn new_cas(&mut self, store: kv::Store, key: String) -> StoreResult<Resource<Cas>> {
        match store.watch(&key).await {
            Ok(watch) => Ok(Ok(self.table.push(Cas { store, key, watch })?)),
            Err(err) => Ok(Err(store_error(err))),
        }
    }
}

impl store::Host for RequestState {
    async fn open(&mut self, identifier: String) -> StoreResult<Resource<Bucket>> {
        match self.open_key_value(&identifier) {
            Ok(store) => Ok(Ok(self.table.push(Bucket { store })?)),
            Err(OpenRefused::AccessDenied) => Ok(Err(store::Error::AccessDenied)),
            Err(OpenRefused::NoSuchStore) => Ok(Err(store::Error::NoSuchStore)),
        }
    }
}

impl store::HostBucket for RequestState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> StoreResult<Option<Vec<u8>>> {
        let store = self.bucket(&bucket)?;
        Ok(store.get(&key).await.map_err(store_error))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> StoreResult<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.set(&key, value).await.map_err(store_error))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> StoreResult<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.delete(&key).await.map_err(store_error))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> StoreResult<bool> {
        let store = self.bucket(&bucket)?;
        Ok(store.exists(&key).await.map_err(store_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> StoreResult<store::KeyResponse> {
        let store = self.bucket(&bucket)?;
        if cursor.is_some() {
            // Spin's words: it never hands out a cursor, so none can come back.
            return Ok(Err(store::Error::Other(
                "list_keys: cursor not supported".into(),
            )));
        }
        Ok(store
            .keys()
            .await
            .map(|keys| store::KeyResponse { keys, cursor: None })
            .map_err(store_error))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl batch::Host for RequestState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> StoreResult<Vec<(String, Option<Vec<u8>>)>> {
        let store = self.bucket(&bucket)?;
        Ok(store.get_many(keys).await.map_err(store_error))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> StoreResult<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.set_many(key_values).await.map_err(store_error))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> StoreResult<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.delete_many(keys).await.map_err(store_error))
    }
}

impl atomics::Host for RequestState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> StoreResult<i64> {
        let store = self.bucket(&bucket)?;
        Ok(store.increment(&key, delta).await.map_err(store_error))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { store, key, watch } = self.table.delete(cas)?;
        match watch.swap(value).await {
            Ok(true) => Ok(Ok(())),
            // The WIT asks for a handle already on the newer value, for the retry.
            Ok(false) => Ok(Err(match self.new_cas(store, key).await? {
                Ok(retry) => atomics::CasError::CasFailed(retry),
                Err(err) => atomics::CasError::StoreError(err),
            })),
            Err(err) => Ok(Err(atomics::CasError::StoreError(store_error(err)))),
        }
    }
}

impl atomics::HostCas for RequestState {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> StoreResult<Resource<Cas>> {
        let store = self.bucket(&bucket)?;
        self.new_cas(store, key).await
    }

    async fn current(&mut self, cas: Resource<Cas>) -> StoreResult<Option<Vec<u8>>> {
        Ok(Ok(self
            .table
            .get(&cas)?
            .watch
            .current()
            .map(<[u8]>::to_vec)))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}
