-- The plugin's own ghost text, for Neovim 0.11 (no `vim.lsp.inline_completion`) or when the
-- built-in is turned off: asks `modeld/inlineCompletion` as you type (debounced, the older
-- request cancelled), shows the suggestion after the cursor in an extmark, and accepts it.
local M = {}

M.namespace = vim.api.nvim_create_namespace('modeld.ghost')
local DEBOUNCE_MS = 75

--- Per buffer: the client, the suggestions shown, the request in flight.
local buffers = {}

local function byte_column(bufnr, row, character, encoding)
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local ok, column = pcall(vim.str_byteindex, line, encoding, character, false)
  return ok and column or #line
end

function M.clear(bufnr, cancel)
  local buffer = buffers[bufnr]
  vim.api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  if not buffer then
    return
  end
  buffer.items = {}
  if cancel and buffer.request_id then
    local client = vim.lsp.get_client_by_id(buffer.client_id)
    if client then
      client:cancel_request(buffer.request_id)
    end
    buffer.request_id = nil
  end
end

--- The shown item's range in bytes (0-based, end exclusive) and its text.
local function current(bufnr)
  local buffer = buffers[bufnr]
  local item = buffer and buffer.items[buffer.index]
  if not item then
    return nil
  end
  local client = vim.lsp.get_client_by_id(buffer.client_id)
  local encoding = client and client.offset_encoding or 'utf-16'
  local text = type(item.insertText) == 'table' and item.insertText.value or item.insertText or ''
  local range
  if item.range then
    range = {
      start_row = item.range.start.line,
      start_col = byte_column(bufnr, item.range.start.line, item.range.start.character, encoding),
      end_row = item.range['end'].line,
      end_col = byte_column(bufnr, item.range['end'].line, item.range['end'].character, encoding),
    }
  else
    local row, col = buffer.cursor[1] - 1, buffer.cursor[2]
    range = { start_row = row, start_col = col, end_row = row, end_col = col }
  end
  return item, range, text
end

function M.show(bufnr)
  vim.api.nvim_buf_clear_namespace(bufnr, M.namespace, 0, -1)
  local item, range, text = current(bufnr)
  if not item then
    return
  end
  local typed = range.end_row == range.start_row and (range.end_col - range.start_col) or 0
  local lines = vim.split(text:sub(typed + 1), '\n')
  if #lines == 1 and lines[1] == '' then
    return
  end
  local buffer = buffers[bufnr]
  local virt_lines = {}
  for index = 2, #lines do
    table.insert(virt_lines, { { lines[index], 'Comment' } })
  end
  local hint = #buffer.items > 1 and string.format(' (%d/%d)', buffer.index, #buffer.items) or ''
  vim.api.nvim_buf_set_extmark(bufnr, M.namespace, buffer.cursor[1] - 1, buffer.cursor[2], {
    virt_text = { { lines[1], 'Comment' }, { hint, 'NonText' } },
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
  })
end

function M.request(bufnr)
  local buffer = buffers[bufnr]
  if not buffer or vim.api.nvim_get_current_buf() ~= bufnr or vim.api.nvim_get_mode().mode ~= 'i' then
    return
  end
  local client = vim.lsp.get_client_by_id(buffer.client_id)
  if not client then
    return
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 2 }
  local _, request_id = client:request('modeld/inlineCompletion', params, function(err, result, context)
    if buffer.request_id == context.request_id then
      buffer.request_id = nil
    end
    local now = vim.api.nvim_win_get_cursor(0)
    if err or not result or now[1] ~= cursor[1] or now[2] ~= cursor[2] then
      return
    end
    buffer.items = result.items or result
    buffer.index = 1
    buffer.cursor = cursor
    M.show(bufnr)
  end, bufnr)
  buffer.request_id = request_id
end

function M.schedule(bufnr)
  local buffer = buffers[bufnr]
  if not buffer then
    return
  end
  M.clear(bufnr, true)
  buffer.timer = buffer.timer or vim.uv.new_timer()
  buffer.timer:stop()
  buffer.timer:start(DEBOUNCE_MS, 0, vim.schedule_wrap(function()
    M.request(bufnr)
  end))
end

--- Starts showing suggestions from `client` in `bufnr`.
function M.attach(bufnr, client)
  buffers[bufnr] = { client_id = client.id, items = {}, index = 1, cursor = { 1, 0 } }
  local group = vim.api.nvim_create_augroup('modeld.ghost.' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.schedule(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.clear(bufnr, true)
    end,
  })
end

--- Accepts the shown suggestion: `all`, a `line` or a `word`; false when none is shown.
function M.accept(unit)
  local bufnr = vim.api.nvim_get_current_buf()
  local item, range, text = current(bufnr)
  if not item then
    return false
  end
  local buffer = buffers[bufnr]
  local keymaps = require('modeld.keymaps')
  local typed = range.end_row == range.start_row and (range.end_col - range.start_col) or 0
  local accepted = unit == 'all' and text or keymaps.partial(text, typed, unit)
  M.clear(bufnr, true)
  vim.schedule(function()
    keymaps.insert(bufnr, range, accepted)
    local client = vim.lsp.get_client_by_id(buffer.client_id)
    if unit == 'all' and item.command and client then
      client:exec_cmd(item.command, { bufnr = bufnr })
    end
  end)
  return true
end

--- Shows the next (`1`) or previous (`-1`) suggestion; false when none is shown.
function M.cycle(delta)
  local bufnr = vim.api.nvim_get_current_buf()
  local buffer = buffers[bufnr]
  if not buffer or #buffer.items == 0 then
    return false
  end
  buffer.index = (buffer.index - 1 + delta) % #buffer.items + 1
  M.show(bufnr)
  return true
end

--- Hides the suggestion; false when none is shown.
function M.dismiss()
  local bufnr = vim.api.nvim_get_current_buf()
  local buffer = buffers[bufnr]
  if not buffer or #buffer.items == 0 then
    return false
  end
  M.clear(bufnr, true)
  return true
end

return M
