-- Two-dimensional vectors, written for modeld's completion benchmark.
local Vector = {}
Vector.__index = Vector

function Vector.new(x, y)
  return setmetatable({ x = x or 0, y = y or 0 }, Vector)
end

function Vector.__add(a, b)
  return Vector.new(a.x + b.x, a.y + b.y)
end

function Vector.__sub(a, b)
  return Vector.new(a.x - b.x, a.y - b.y)
end

function Vector.__mul(a, scale)
  return Vector.new(a.x * scale, a.y * scale)
end

function Vector:length()
  return math.sqrt(self.x * self.x + self.y * self.y)
end

function Vector:normalized()
  local length = self:length()
  if length == 0 then
    return Vector.new(0, 0)
  end
  return Vector.new(self.x / length, self.y / length)
end

function Vector:dot(other)
  return self.x * other.x + self.y * other.y
end

function Vector:__tostring()
  return string.format("(%g, %g)", self.x, self.y)
end

return Vector
