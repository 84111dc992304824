"""A small inventory of items kept in a warehouse, written for modeld's completion benchmark."""

from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    quantity: int
    unit_price: float

    def total_value(self):
        return self.quantity * self.unit_price


@dataclass
class Inventory:
    items: dict = field(default_factory=dict)

    def add(self, name, quantity, unit_price):
        if name in self.items:
            self.items[name].quantity += quantity
        else:
            self.items[name] = Item(name, quantity, unit_price)

    def remove(self, name, quantity):
        item = self.items.get(name)
        if item is None:
            raise KeyError(f"no item named {name}")
        if item.quantity < quantity:
            raise ValueError(f"only {item.quantity} of {name} left")
        item.quantity -= quantity
        if item.quantity == 0:
            del self.items[name]

    def total_value(self):
        return sum(item.total_value() for item in self.items.values())

    def low_stock(self, threshold):
        return sorted(name for name, item in self.items.items() if item.quantity < threshold)


def parse_line(line):
    name, quantity, unit_price = line.strip().split(",")
    return name, int(quantity), float(unit_price)


def load(lines):
    inventory = Inventory()
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        inventory.add(*parse_line(line))
    return inventory
