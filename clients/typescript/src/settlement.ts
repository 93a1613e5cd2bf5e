/**
 * The chain side: deposits into the settlement contract and withdrawal claims, with viem.
 *
 * The contract's address and chain id are the EIP-712 domain's (`GET /v1/domain`:
 * `verifying_contract`, `chain_id`); only the chain's JSON-RPC URL is the caller's.
 * The ABI is the committed build artifact's (src/abi.ts, generated from
 * contracts/build/Settlement.json).
 *
 *     const chain = await Settlement.connect({ rpcUrl, signer: key, domain: await client.domain() });
 *     await chain.deposit(markets.asset("USDC"), "250");
 *     const w = await client.withdraw("USDC", "100");
 *     await chain.claim(await client.withdrawalProof(w.withdrawalId!));
 */
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  erc20Abi,
  http,
  parseEventLogs,
  zeroAddress,
  type Hex,
  type LocalAccount,
  type PublicClient,
  type TransactionReceipt,
  type WalletClient,
  type Chain,
  type Transport,
} from "viem";

import { settlementAbi } from "./abi.js";
import type { WithdrawalProof } from "./client.js";
import { parseAddress, toAccount, type Address, type Domain, type Signer } from "./intents.js";
import type { AssetInfo, Numeric } from "./units.js";

export interface TxResult {
  hash: Hex;
  receipt: TransactionReceipt;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ZERO_ROOT = `0x${"00".repeat(32)}`;

export class Settlement {
  private constructor(
    readonly address: Address,
    readonly account: LocalAccount,
    readonly publicClient: PublicClient<Transport, Chain>,
    readonly walletClient: WalletClient<Transport, Chain, LocalAccount>,
  ) {}

  /** Connect to the contract the domain names, on the chain at `rpcUrl` (whose chain id
   * must be the domain's), sending transactions from `signer`. */
  static async connect(options: { rpcUrl: string; signer: Signer; domain: Domain }): Promise<Settlement> {
    const { rpcUrl, domain } = options;
    const chain = defineChain({
      id: Number(domain.chainId),
      name: `seqnet chain ${domain.chainId}`,
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: [rpcUrl] } },
    });
    const account = toAccount(options.signer);
    const publicClient = createPublicClient({ chain, transport: http(rpcUrl) });
    const walletClient = createWalletClient({ chain, transport: http(rpcUrl), account });
    const onChain = await publicClient.getChainId();
    if (BigInt(onChain) !== domain.chainId) {
      throw new Error(`${rpcUrl} is chain ${onChain}, the committee's domain says ${domain.chainId}`);
    }
    return new Settlement(domain.verifyingContract, account, publicClient, walletClient);
  }

  private async sent(hash: Hex): Promise<TxResult> {
    const receipt = await this.publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`transaction ${hash} reverted`);
    return { hash, receipt };
  }

  /** Deposit `amount` (human units) of a listed asset (`client.markets()` → `asset(…)`);
   * returns the contract's deposit id. The engine credits it after the chain watchers
   * saw it with enough confirmations and the committee ordered it. */
  async deposit(asset: AssetInfo, amount: Numeric): Promise<TxResult & { depositId: bigint }> {
    const token = parseAddress(asset.token, "token");
    const baseUnits = asset.toChainAmount(amount);
    return token === zeroAddress ? this.depositEth(baseUnits) : this.depositToken(token, baseUnits);
  }

  /** Deposit `wei` (a multiple of ETH's unit). */
  async depositEth(wei: bigint): Promise<TxResult & { depositId: bigint }> {
    const { request } = await this.publicClient.simulateContract({
      address: this.address, abi: settlementAbi, functionName: "depositEth", value: wei, account: this.account,
    });
    return this.withDepositId(await this.sent(await this.walletClient.writeContract(request)));
  }

  /** Approve (if needed) and deposit `amount` token base units of an ERC-20. */
  async depositToken(token: Address, amount: bigint): Promise<TxResult & { depositId: bigint }> {
    const allowance = await this.publicClient.readContract({
      address: token, abi: erc20Abi, functionName: "allowance", args: [this.account.address, this.address],
    });
    if (allowance < amount) {
      const approve = await this.publicClient.simulateContract({
        address: token, abi: erc20Abi, functionName: "approve", args: [this.address, amount], account: this.account,
      });
      await this.sent(await this.walletClient.writeContract(approve.request));
    }
    const { request } = await this.publicClient.simulateContract({
      address: this.address, abi: settlementAbi, functionName: "depositToken", args: [token, amount], account: this.account,
    });
    return this.withDepositId(await this.sent(await this.walletClient.writeContract(request)));
  }

  private withDepositId(tx: TxResult): TxResult & { depositId: bigint } {
    const [event] = parseEventLogs({ abi: settlementAbi, eventName: "Deposit", logs: tx.receipt.logs });
    if (event === undefined) throw new Error(`no Deposit event in ${tx.hash}`);
    return { ...tx, depositId: event.args.depositId };
  }

  /** Whether checkpoint `sequence` was accepted on chain (its withdrawals root is known). */
  async checkpointLanded(sequence: bigint): Promise<boolean> {
    const root = await this.publicClient.readContract({
      address: this.address, abi: settlementAbi, functionName: "withdrawalsRoots", args: [sequence],
    });
    return root !== ZERO_ROOT;
  }

  async isClaimed(withdrawalId: bigint): Promise<boolean> {
    return this.publicClient.readContract({
      address: this.address, abi: settlementAbi, functionName: "isClaimed", args: [withdrawalId],
    });
  }

  /** Claim a withdrawal with the proof from the API (`client.withdrawalProof(id)`): wait
   * until its checkpoint landed, then call `claimWithdrawal`. Anyone may send it; the
   * contract pays `proof.account`. */
  async claim(proof: WithdrawalProof, options: { timeoutMs?: number; pollMs?: number } = {}): Promise<TxResult> {
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    while (!(await this.checkpointLanded(proof.sequence))) {
      if (Date.now() > deadline) throw new Error(`checkpoint ${proof.sequence} has not landed on chain`);
      await sleep(options.pollMs ?? 500);
    }
    const { request } = await this.publicClient.simulateContract({
      address: this.address,
      abi: settlementAbi,
      functionName: "claimWithdrawal",
      args: [proof.sequence, proof.withdrawalId, proof.account, proof.token, proof.amount, proof.proof],
      account: this.account,
    });
    return this.sent(await this.walletClient.writeContract(request));
  }

  /** On-chain balance of `account` in `token` (the zero address: ETH), in base units. */
  async balanceOf(token: Address, account: Address = parseAddress(this.account.address)): Promise<bigint> {
    if (parseAddress(token) === zeroAddress) return this.publicClient.getBalance({ address: account });
    return this.publicClient.readContract({ address: token, abi: erc20Abi, functionName: "balanceOf", args: [account] });
  }
}
