// A bank account with a transaction log, written for modeld's completion benchmark.
import java.util.ArrayList;
import java.util.List;

public class Account {
    private final String owner;
    private long balanceCents;
    private final List<String> log = new ArrayList<>();

    public Account(String owner, long openingCents) {
        this.owner = owner;
        this.balanceCents = openingCents;
        log.add("open " + openingCents);
    }

    public String getOwner() {
        return owner;
    }

    public long getBalanceCents() {
        return balanceCents;
    }

    public void deposit(long cents) {
        if (cents <= 0) {
            throw new IllegalArgumentException("deposit must be positive");
        }
        balanceCents += cents;
        log.add("deposit " + cents);
    }

    public void withdraw(long cents) {
        if (cents > balanceCents) {
            throw new IllegalStateException("insufficient funds");
        }
        balanceCents -= cents;
        log.add("withdraw " + cents);
    }

    public void transferTo(Account other, long cents) {
        withdraw(cents);
        other.deposit(cents);
        log.add("transfer " + cents + " to " + other.getOwner());
    }

    public List<String> history() {
        return new ArrayList<>(log);
    }
}
