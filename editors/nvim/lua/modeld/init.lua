-- modeld for Neovim: starts `modeld lsp` through `vim.lsp.config`/`vim.lsp.enable`, shows its
-- inline completions (Neovim 0.12's built-in ghost text, or the plugin's own on 0.11), and
-- gives `:Modeld` its chat, code tasks and model picker.
local M = {}

---@class modeld.Config
M.config = {
  --- The model; the server's default (`smollm2:135m`) when nil.
  model = nil,
  --- The server command; `{ 'modeld', 'lsp' }` from `lsp/modeld.lua` when nil.
  cmd = nil,
  --- Environment for the server (`OLLAMA_HOST`, say).
  cmd_env = nil,
  --- Filetypes to attach to; `lsp/modeld.lua`'s list when nil.
  filetypes = nil,
  --- More server settings (`contextTokens`, `debounceMs`, `disabledLanguages`, `maxTokens`...).
  settings = {},
  --- Use Neovim 0.12's `vim.lsp.inline_completion` when there is one.
  builtin_ghost_text = true,
  --- Insert-mode keys; false leaves one unmapped.
  keymaps = {
    accept = '<Tab>',
    accept_line = '<C-l>',
    accept_word = '<C-Right>',
    next = '<M-]>',
    previous = '<M-[>',
    dismiss = '<C-]>',
  },
}

--- Partial results of `modeld/chat` requests, by token.
local partial_handlers = {}

local function server_settings()
  local settings = vim.deepcopy(M.config.settings or {})
  if M.config.model then
    settings.model = M.config.model
  end
  return settings
end

--- The modeld client of a buffer.
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = 'modeld' })[1]
end

--- Whether the plugin renders ghost text itself (no built-in inline completion, or asked).
function M.uses_own_ghost_text()
  return not (M.config.builtin_ghost_text and vim.lsp.inline_completion)
end

local function progress_handler(err, result, context, config)
  local handler = result and partial_handlers[result.token]
  if handler then
    handler(result.value)
    return
  end
  return vim.lsp.handlers['$/progress'](err, result, context, config)
end

--- Sets the plugin up and enables the language server.
---@param options? modeld.Config
function M.setup(options)
  M.config = vim.tbl_deep_extend('force', M.config, options or {})
  local lsp_config = {
    init_options = server_settings(),
    settings = { modeld = server_settings() },
    handlers = { ['$/progress'] = progress_handler },
  }
  lsp_config.cmd = M.config.cmd
  lsp_config.cmd_env = M.config.cmd_env
  lsp_config.filetypes = M.config.filetypes
  vim.lsp.config('modeld', lsp_config)
  vim.lsp.enable('modeld')

  local group = vim.api.nvim_create_augroup('modeld', { clear = true })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(event)
      local client = vim.lsp.get_client_by_id(event.data.client_id)
      if not client or client.name ~= 'modeld' then
        return
      end
      if M.uses_own_ghost_text() then
        require('modeld.ghost').attach(event.buf, client)
      else
        vim.lsp.inline_completion.enable(true, { bufnr = event.buf })
      end
      require('modeld.keymaps').attach(event.buf, M.config.keymaps)
    end,
  })
end

--- Sends a `modeld/chat` request about `range` of the current buffer; `on_piece` gets each
--- streamed piece, `on_done` the whole result (or an error).
function M.chat_request(bufnr, range, prompt, on_piece, on_done)
  local client = M.client(bufnr)
  if not client then
    on_done('modeld is not attached to this buffer (see :checkhealth modeld)', nil)
    return
  end
  local token = 'modeld-chat-' .. tostring(vim.uv.hrtime())
  partial_handlers[token] = function(value)
    if value and value.content then
      on_piece(value.content)
    end
  end
  local params = {
    textDocument = vim.lsp.util.make_text_document_params(bufnr),
    range = range,
    prompt = prompt,
    partialResultToken = token,
  }
  client:request('modeld/chat', params, function(err, result)
    partial_handlers[token] = nil
    on_done(err and (err.message or tostring(err)) or nil, result)
  end, bufnr)
end

--- The LSP range of the command's lines (a range given), else the cursor.
function M.command_range(command, bufnr)
  local client = M.client(bufnr)
  local encoding = client and client.offset_encoding or 'utf-16'
  if command.range and command.range > 0 then
    local last = vim.api.nvim_buf_get_lines(bufnr, command.line2 - 1, command.line2, false)[1] or ''
    return {
      start = { line = command.line1 - 1, character = 0 },
      ['end'] = { line = command.line2 - 1, character = vim.str_utfindex(last, encoding) },
    }
  end
  local position = vim.lsp.util.make_position_params(0, encoding).position
  return { start = position, ['end'] = position }
end

local task_titles = {
  fix = 'modeld: Fix this code',
  doc = 'modeld: Document this code',
  tests = 'modeld: Write tests for this code',
}

--- `:Modeld {subcommand}`.
function M.command(command)
  local subcommand = command.fargs[1]
  local rest = table.concat(vim.list_slice(command.fargs, 2), ' ')
  local bufnr = vim.api.nvim_get_current_buf()
  if subcommand == 'chat' or subcommand == 'explain' then
    local prompt = subcommand == 'explain' and 'Explain what this code does, briefly and precisely.' or rest
    if prompt == '' then
      prompt = vim.fn.input('modeld> ')
    end
    require('modeld.chat').ask(bufnr, M.command_range(command, bufnr), prompt)
  elseif task_titles[subcommand] then
    local range = M.command_range(command, bufnr)
    vim.lsp.buf.code_action({
      apply = true,
      range = {
        start = { range.start.line + 1, range.start.character },
        ['end'] = { range['end'].line + 1, range['end'].character },
      },
      filter = function(action)
        return action.title == task_titles[subcommand]
      end,
    })
  elseif subcommand == 'model' then
    require('modeld.models').pick()
  elseif subcommand == 'apply' then
    require('modeld.chat').apply()
  else
    vim.notify('modeld: unknown subcommand ' .. tostring(subcommand), vim.log.levels.ERROR)
  end
end

--- Uses `model` from now on, in every modeld client.
function M.set_model(model)
  M.config.model = model
  for _, client in ipairs(vim.lsp.get_clients({ name = 'modeld' })) do
    client.settings = { modeld = server_settings() }
    client:notify('workspace/didChangeConfiguration', { settings = { modeld = server_settings() } })
  end
end

return M
