// A bounded queue with priorities, written for modeld's completion benchmark.

export interface Job {
  id: number;
  priority: number;
  payload: string;
}

export class BoundedQueue {
  private jobs: Job[] = [];

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.jobs.length;
  }

  push(job: Job): boolean {
    if (this.jobs.length >= this.capacity) {
      return false;
    }
    const index = this.jobs.findIndex((queued) => queued.priority < job.priority);
    if (index === -1) {
      this.jobs.push(job);
    } else {
      this.jobs.splice(index, 0, job);
    }
    return true;
  }

  pop(): Job | undefined {
    return this.jobs.shift();
  }

  peek(): Job | undefined {
    return this.jobs[0];
  }

  drain(limit: number): Job[] {
    const taken = this.jobs.slice(0, limit);
    this.jobs = this.jobs.slice(limit);
    return taken;
  }
}

export function byPriority(jobs: Job[]): Map<number, Job[]> {
  const groups = new Map<number, Job[]>();
  for (const job of jobs) {
    const group = groups.get(job.priority) ?? [];
    group.push(job);
    groups.set(job.priority, group);
  }
  return groups;
}
