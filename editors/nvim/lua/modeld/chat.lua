-- `:Modeld chat` and `:Modeld explain`: a chat buffer that streams the answer about the code
-- at a range, and `:Modeld apply` to put the answer's code in place of that code.
local M = {}

--- The last answer's edit and where it applies.
local last = { edit = nil, encoding = 'utf-16' }

local function chat_buffer()
  local name = 'modeld://chat'
  local bufnr = vim.fn.bufnr(name)
  if bufnr == -1 then
    bufnr = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(bufnr, name)
    vim.bo[bufnr].filetype = 'markdown'
    vim.bo[bufnr].bufhidden = 'hide'
  end
  if vim.fn.bufwinid(bufnr) == -1 then
    local origin = vim.api.nvim_get_current_win()
    vim.cmd('botright vsplit')
    vim.api.nvim_win_set_buf(0, bufnr)
    vim.api.nvim_set_current_win(origin)
  end
  return bufnr
end

local function append(bufnr, text)
  local count = vim.api.nvim_buf_line_count(bufnr)
  local last_line = vim.api.nvim_buf_get_lines(bufnr, count - 1, count, false)[1] or ''
  local pieces = vim.split(text, '\n')
  vim.api.nvim_buf_set_text(bufnr, count - 1, #last_line, count - 1, #last_line, pieces)
  local window = vim.fn.bufwinid(bufnr)
  if window ~= -1 then
    vim.api.nvim_win_set_cursor(window, { vim.api.nvim_buf_line_count(bufnr), 0 })
  end
end

--- Asks `prompt` about `range` of `bufnr`, streaming the answer into the chat buffer.
function M.ask(bufnr, range, prompt)
  local chat = chat_buffer()
  local header = { '', '## ' .. prompt, '' }
  if vim.api.nvim_buf_line_count(chat) == 1 and vim.api.nvim_buf_get_lines(chat, 0, 1, false)[1] == '' then
    header = { '## ' .. prompt, '' }
    vim.api.nvim_buf_set_lines(chat, 0, -1, false, header)
  else
    vim.api.nvim_buf_set_lines(chat, -1, -1, false, header)
  end
  local client = require('modeld').client(bufnr)
  last.encoding = client and client.offset_encoding or 'utf-16'
  require('modeld').chat_request(bufnr, range, prompt, function(piece)
    append(chat, piece)
  end, function(err, result)
    if err then
      append(chat, '\n\n(modeld: ' .. err .. ')')
      return
    end
    last.edit = result and result.edit
    append(chat, last.edit and '\n\n(`:Modeld apply` puts this code in place)\n' or '\n')
    vim.api.nvim_exec_autocmds('User', { pattern = 'ModeldChatDone', modeline = false })
  end)
end

--- Applies the last answer's code edit.
function M.apply()
  if not last.edit then
    vim.notify('modeld: the last answer has no code to apply', vim.log.levels.WARN)
    return
  end
  vim.lsp.util.apply_workspace_edit(last.edit, last.encoding)
  last.edit = nil
end

return M
