-- Insert-mode keys for suggestions: accept all, a line or a word, the next or previous one,
-- dismiss. Each key falls through to its usual meaning when no suggestion is shown.
local M = {}

local function own()
  return require('modeld').uses_own_ghost_text()
end

--- The part of `text` to accept: its first line, or up to the end of its next word, after
--- the `typed` characters the suggestion already covers.
function M.partial(text, typed, unit)
  local rest = text:sub(typed + 1)
  local piece
  if unit == 'line' then
    piece = rest:match('^[^\n]*')
    if piece == '' and rest:sub(1, 1) == '\n' then
      piece = '\n' .. (rest:sub(2):match('^[^\n]*') or '')
    end
  else
    piece = rest:match('^%s*[%w_]+') or rest:match('^%s*%S') or rest
  end
  return text:sub(1, typed) .. piece
end

--- Inserts `text` over `range` (0-based rows and columns, end exclusive) and puts the cursor
--- after it.
function M.insert(bufnr, range, text)
  local lines = vim.split(text, '\n')
  vim.api.nvim_buf_set_text(bufnr, range.start_row, range.start_col, range.end_row, range.end_col, lines)
  local row = range.start_row + #lines
  local col = (#lines == 1 and range.start_col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { row, col })
end

local function accept_part(unit)
  if own() then
    return require('modeld.ghost').accept(unit)
  end
  return vim.lsp.inline_completion.get({
    on_accept = function(item)
      local text = type(item.insert_text) == 'string' and item.insert_text or item.insert_text.value
      local cursor = vim.api.nvim_win_get_cursor(0)
      local range = item.range
          and {
            start_row = item.range.start.row,
            start_col = item.range.start.col,
            end_row = item.range.end_.row,
            end_col = item.range.end_.col,
          }
        or { start_row = cursor[1] - 1, start_col = cursor[2], end_row = cursor[1] - 1, end_col = cursor[2] }
      local typed = range.end_row == range.start_row and (range.end_col - range.start_col) or 0
      M.insert(0, range, M.partial(text, typed, unit))
    end,
  })
end

local actions = {
  accept = function()
    if own() then
      return require('modeld.ghost').accept('all')
    end
    return vim.lsp.inline_completion.get()
  end,
  accept_line = function()
    return accept_part('line')
  end,
  accept_word = function()
    return accept_part('word')
  end,
  next = function()
    if own() then
      return require('modeld.ghost').cycle(1)
    end
    vim.lsp.inline_completion.select({ count = 1 })
    return true
  end,
  previous = function()
    if own() then
      return require('modeld.ghost').cycle(-1)
    end
    vim.lsp.inline_completion.select({ count = -1 })
    return true
  end,
  dismiss = function()
    if own() then
      return require('modeld.ghost').dismiss()
    end
    local bufnr = vim.api.nvim_get_current_buf()
    vim.lsp.inline_completion.enable(false, { bufnr = bufnr })
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    return true
  end,
}

M.actions = actions

--- Maps the configured keys in `bufnr`.
function M.attach(bufnr, keys)
  for name, key in pairs(keys or {}) do
    local action = actions[name]
    if key and action then
      vim.keymap.set('i', key, function()
        if action() then
          return ''
        end
        return vim.api.nvim_replace_termcodes(key, true, false, true)
      end, { buffer = bufnr, expr = true, desc = 'modeld: ' .. name:gsub('_', ' ') })
    end
  end
end

return M
