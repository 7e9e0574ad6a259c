//! The WIT traits of interface `llm`: each method finds its entry in
//! the instance's table and applies the entry's rule. A handle that is not
//! in the table (it cannot be, the component model checks handles) traps
//! instead of panicking.

use wasmtime::component::Resource;

use super::{ChunkEntry, RequestEntry, ResponseEntry, StreamEndEntry, ToolCallEntry, len32, wit_usage};
use crate::bindings::llm;
use crate::bindings::types::{self as wit, AccessError, LlmError};
use crate::imports::StoreState;

impl llm::Host for StoreState {}

impl llm::HostRequest for StoreState {
    fn id(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.info.request_id.clone())
    }
    fn caller(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&r)?.info.caller.clone())
    }
    fn provider(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.info.provider.clone())
    }
    fn streaming(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&r)?.info.streaming)
    }
    fn model(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().model.clone())
    }
    fn set_model(&mut self, r: Resource<RequestEntry>, model: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_model(&mut self.llm, model))
    }
    fn message_count(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<u32> {
        Ok(len32(self.table.get(&r)?.data.get().messages.len()))
    }
    fn role(&mut self, r: Resource<RequestEntry>, index: u32) -> wasmtime::Result<Result<wit::Role, AccessError>> {
        Ok(self.table.get(&r)?.role(index))
    }
    fn text(&mut self, r: Resource<RequestEntry>, index: u32) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.text(&mut self.llm, index))
    }
    fn set_text(
        &mut self,
        r: Resource<RequestEntry>,
        index: u32,
        text: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_text(&mut self.llm, index, text))
    }
    fn message_json(&mut self, r: Resource<RequestEntry>, index: u32) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.message_json(&mut self.llm, index))
    }
    fn insert_message(
        &mut self,
        r: Resource<RequestEntry>,
        index: u32,
        role: wit::Role,
        text: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.insert_message(&mut self.llm, index, role, text))
    }
    fn insert_message_json(
        &mut self,
        r: Resource<RequestEntry>,
        index: u32,
        json: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.insert_message_json(&mut self.llm, index, json))
    }
    fn remove_message(&mut self, r: Resource<RequestEntry>, index: u32) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.remove_message(&mut self.llm, index))
    }
    fn tool_count(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<u32> {
        Ok(len32(self.table.get(&r)?.data.get().tools().len()))
    }
    fn tools_json(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.tools_json(&mut self.llm))
    }
    fn param(
        &mut self,
        r: Resource<RequestEntry>,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.param(&name))
    }
    fn set_param(
        &mut self,
        r: Resource<RequestEntry>,
        name: String,
        json: Option<String>,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_param(&mut self.llm, &name, json))
    }
    fn to_json(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.to_json(&mut self.llm))
    }
    fn drop(&mut self, _: Resource<RequestEntry>) -> wasmtime::Result<()> {
        // Guests only ever get borrows; the pipeline takes the entry back.
        Ok(())
    }
}

impl llm::HostResponse for StoreState {
    fn error(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<Option<LlmError>> {
        Ok(self.table.get(&r)?.error.clone())
    }
    fn id(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().id.clone())
    }
    fn model(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().model.clone())
    }
    fn choice_count(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<u32> {
        Ok(len32(self.table.get(&r)?.data.get().choices.len()))
    }
    fn text(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.text(&mut self.llm, index))
    }
    fn set_text(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
        text: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_text(&mut self.llm, index, text))
    }
    fn refusal(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.refusal(&mut self.llm, index))
    }
    fn finish_reason(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.finish_reason(index))
    }
    fn tool_calls(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Vec<wit::ToolCall>, AccessError>> {
        Ok(self.table.get(&r)?.tool_calls(&mut self.llm, index))
    }
    fn usage(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<Option<wit::Usage>> {
        Ok(self.table.get(&r)?.data.get().usage().map(wit_usage))
    }
    fn param(
        &mut self,
        r: Resource<ResponseEntry>,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.param(&name))
    }
    fn set_param(
        &mut self,
        r: Resource<ResponseEntry>,
        name: String,
        json: Option<String>,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_param(&mut self.llm, &name, json))
    }
    fn to_json(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.to_json(&mut self.llm))
    }
    fn drop(&mut self, _: Resource<ResponseEntry>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl llm::HostChunk for StoreState {
    fn choice_count(&mut self, r: Resource<ChunkEntry>) -> wasmtime::Result<u32> {
        Ok(len32(self.table.get(&r)?.data.get().choices.len()))
    }
    fn text(&mut self, r: Resource<ChunkEntry>, index: u32) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.text(&mut self.llm, index))
    }
    fn set_text(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
        text: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_text(&mut self.llm, index, text))
    }
    fn reasoning(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.reasoning(&mut self.llm, index))
    }
    fn refusal(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.refusal(&mut self.llm, index))
    }
    fn role(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<wit::Role>, AccessError>> {
        Ok(self.table.get(&r)?.role(index))
    }
    fn tool_calls(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Vec<wit::ToolCallFragment>, AccessError>> {
        Ok(self.table.get(&r)?.tool_calls(&mut self.llm, index))
    }
    fn finish_reason(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.finish_reason(index))
    }
    fn usage(&mut self, r: Resource<ChunkEntry>) -> wasmtime::Result<Option<wit::Usage>> {
        Ok(self.table.get(&r)?.data.get().usage().map(wit_usage))
    }
    fn to_json(&mut self, r: Resource<ChunkEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.to_json(&mut self.llm))
    }
    fn last(&mut self, r: Resource<ChunkEntry>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&r)?.last)
    }
    fn drop(&mut self, _: Resource<ChunkEntry>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl llm::HostStreamEnd for StoreState {
    fn usage(&mut self, r: Resource<StreamEndEntry>) -> wasmtime::Result<Option<wit::Usage>> {
        Ok(self.table.get(&r)?.usage.as_ref().map(wit_usage))
    }
    fn append_text(&mut self, r: Resource<StreamEndEntry>, text: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.append_text(&mut self.llm, text))
    }
    fn append_json(&mut self, r: Resource<StreamEndEntry>, json: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.append_json(&mut self.llm, json))
    }
    fn drop(&mut self, _: Resource<StreamEndEntry>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl llm::HostToolCallRef for StoreState {
    fn id(&mut self, r: Resource<ToolCallEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().id.clone())
    }
    fn name(&mut self, r: Resource<ToolCallEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().function.name.clone())
    }
    fn arguments(&mut self, r: Resource<ToolCallEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.arguments(&mut self.llm))
    }
    fn set_arguments(&mut self, r: Resource<ToolCallEntry>, json: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_arguments(&mut self.llm, json))
    }
    fn set_name(&mut self, r: Resource<ToolCallEntry>, name: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_name(&mut self.llm, name))
    }
    fn drop(&mut self, _: Resource<ToolCallEntry>) -> wasmtime::Result<()> {
        Ok(())
    }
}
